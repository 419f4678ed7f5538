#!/bin/sh
# notify_command example: mail failed jobs with mail(1) (bsd-mailx or mailutils).
#
#   [global]
#   notify_command = /usr/local/bin/walvault-mail dba@example.com
#
# The recipient is the first argument. Successes are not mailed (cron-style: silence unless
# something is wrong); "all" as the second argument mails every event (notify_command gives hooks
# no environment of their own, so options are arguments).
set -eu
to=${1:?usage: walvault-mail RECIPIENT}
event=$(cat)
if printf '%s' "$event" | grep -Eq '"status": *"ok"'; then
    [ "${2:-}" = all ] || exit 0
fi
name=$(printf '%s' "$event" | sed -n 's/.*"event": *"\([^"]*\)".*/\1/p')
host=$(printf '%s' "$event" | sed -n 's/.*"host": *"\([^"]*\)".*/\1/p')
printf '%s\n' "$event" | mail -s "walvault: $name failed on $host" "$to"
