"""GET /images/{id}/similar: more like a catalog image, never the image itself."""

import numpy as np

from tests.conftest import jpeg, sample_bgr
from tests.integration.test_api import add


def test_similar_finds_the_edited_copy_and_leaves_out_the_image(api, empty_catalog):
    ids = {n: add(api, n) for n in ("chelsea", "coffee", "rocket", "astronaut")}
    cat = sample_bgr("chelsea")
    copy_id = add(api, "chelsea", np.ascontiguousarray(cat[30:-30, 40:-20][:, ::-1]))

    reply = api.get(f"/images/{ids['chelsea']}/similar?k=5")
    assert reply.status == 200, reply.body
    found = [r["id"] for r in reply.body["results"]]
    assert ids["chelsea"] not in found
    assert found[0] == copy_id and reply.body["results"][0]["transform"] == "mirror"
    assert len(found) == 4
    assert reply.body["image"]["id"] == ids["chelsea"]
    assert reply.body["query"]["sha256"] == ids["chelsea"]

    close = api.get(f"/images/{ids['chelsea']}/similar?k=5&min_score=0.5")
    assert [r["id"] for r in close.body["results"]] == [copy_id]
    # The stored query lets the keypoint view draw a similar-search result.
    m = api.get(f"/images/{copy_id}/matches?query={ids['chelsea']}")
    assert m.status == 200 and m.body["mirrored"] is True and len(m.body["pairs"]) > 20


def test_similar_of_an_image_with_no_neighbours_is_empty(api, empty_catalog):
    alone = add(api, "coins")
    reply = api.get(f"/images/{alone}/similar")
    assert reply.status == 200 and reply.body["results"] == []


def test_similar_refuses_unknown_ids_and_bad_parameters(api, empty_catalog):
    image_id = add(api, "coffee")
    assert api.get(f"/images/{'0' * 64}/similar").status == 404
    assert api.get("/images/nope/similar").status == 404
    assert api.get(f"/images/{image_id}/similar?k=0").status == 400
    assert api.get(f"/images/{image_id}/similar?min_score=2").status == 400
    assert api.get(f"/images/{image_id}/similar?ranking=best").status == 400
