#!/bin/sh
# Image entrypoint for plain `docker run IMAGE module.handler`, as in the AWS
# base images: without a Runtime API around, serve the function through the
# emulator on port 8080. sam local replaces this entrypoint with its own
# emulator at /var/rapid, which starts /var/runtime/bootstrap directly.
if [ $# -ge 1 ]; then
    export _HANDLER="$1"
fi
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
    exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
