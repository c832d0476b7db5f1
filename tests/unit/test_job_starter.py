"""Starting the duplicates job: an asynchronous invocation, and a 503 when there is nothing to invoke."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from pictrace.errors import JobUnavailable
from pictrace.runtime import _starter


class Lambda:
    def __init__(self, fail: bool = False) -> None:
        self.calls, self.fail = [], fail

    def invoke(self, **kw) -> dict:
        if self.fail:
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}}, "Invoke")
        self.calls.append(kw)
        return {"StatusCode": 202}


def test_the_job_is_invoked_without_waiting():
    client = Lambda()
    _starter(lambda: client, "stack-duplicates")({"run": "abc"})
    [call] = client.calls
    assert call["FunctionName"] == "stack-duplicates" and call["InvocationType"] == "Event"
    assert json.loads(call["Payload"]) == {"run": "abc"}


@pytest.mark.parametrize("name, client", [("", Lambda()), ("stack-duplicates", Lambda(fail=True))])
def test_a_job_that_cannot_start_is_a_503(name, client):
    with pytest.raises(JobUnavailable) as caught:
        _starter(lambda: client, name)({"run": "abc"})
    assert caught.value.status == 503 and caught.value.code == "job_unavailable"
