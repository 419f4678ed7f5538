#!/bin/sh
# notify_command example: mail failed jobs with mail(1) (bsd-mailx or mailutils).
#
#   [global]
#   notify_command = /usr/local/bin/walvault-mail dba@example.com
#
# The recipient is the first argument. Successes are not mailed (cron-style: silence unless
# something is wrong); set ALL=yes in the script's environment to mail every event.
set -eu
to=${1:?usage: walvault-mail RECIPIENT}
event=$(cat)
case "$event" in
*'"status":"ok"'*) [ "${ALL:-no}" = yes ] || exit 0 ;;
esac
name=$(printf '%s' "$event" | sed -n 's/.*"event":"\([^"]*\)".*/\1/p')
host=$(printf '%s' "$event" | sed -n 's/.*"host":"\([^"]*\)".*/\1/p')
printf '%s\n' "$event" | mail -s "walvault: $name failed on $host" "$to"
