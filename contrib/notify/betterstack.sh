#!/bin/sh
# notify_command example: send the event to a log service's HTTP ingestion endpoint (Better Stack
# Logs here; any endpoint that takes a JSON body works the same way).
#
#   [global]
#   notify_command = /usr/local/bin/walvault-betterstack
#
# The source token is read from a file only root/postgres can read: walvault gives hooks no
# secrets in their environment. Put the token alone in /etc/walvault/betterstack.token (chmod 600).
# (TOKEN_FILE and URL override the defaults when the script is run by hand.)
set -eu
TOKEN_FILE=${TOKEN_FILE:-/etc/walvault/betterstack.token}
URL=${URL:-https://in.logs.betterstack.com}
event=$(cat)                          # one JSON object: event, status, message, time, ...
token=$(cat "$TOKEN_FILE")
# The token goes in a header read from stdin (-H @-), not on the command line where ps shows it.
printf 'Authorization: Bearer %s\n' "$token" |
    curl --silent --show-error --fail --max-time 20 -X POST \
        -H 'Content-Type: application/json' -H @- --data-binary "$event" "$URL" >/dev/null
