#!/usr/bin/env bash
# The real psql against a running cxdb: \dt, \dv, \d conversations, \x with
# a query, \copy (SELECT …) to stdout csv, each checked for the text it must
# print. Writes four events of a tenant of its own over HTTP first.
#
# Usage: psql.sh PG_HOST:PORT HTTP_HOST:PORT
#        psql.sh --ports-file PATH        (the server's --ports-file)
# The password is CXDB_TOKEN (any with --auth none). Without psql installed
# it prints "psql not installed, skipped" and exits 0.
# Needs: psql (Debian/Ubuntu: postgresql-client), python3.
set -euo pipefail

if ! command -v psql >/dev/null 2>&1; then
  echo "psql not installed, skipped"
  exit 0
fi

if [ "${1:-}" = "--ports-file" ] && [ $# -eq 2 ]; then
  read -r pg http < <(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p["pg"], p["http"])' "$2")
elif [ $# -eq 2 ]; then
  pg=$1 http=$2
else
  sed -n '2,9p' "$0"; exit 2
fi
token=${CXDB_TOKEN:-cxdb}
tenant="psql-$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')"
echo "psql: $(psql --version), pg $pg, http $http, tenant $tenant"

# c1 (chat): a customer message and an agent reply; c2 (email): nothing yet.
python3 - "$http" "$token" "$tenant" <<'PY'
import json, sys, urllib.request
http, token, tenant = sys.argv[1:]
def ev(event_id, at, event_type, **f):
    return {"tenant_id": tenant, "event_id": event_id, "event_time": f"2026-01-01T{at}:00Z",
            "event_type": event_type, **f}
events = [
    ev("c1", "09:00", "conversation.created", conversation_id="c1", channel="chat"),
    ev("m1", "09:01", "message.created", conversation_id="c1", actor_type="customer",
       body="hello, where is my order?"),
    ev("m2", "09:03", "message.created", conversation_id="c1", actor_type="agent", agent_id="ag1"),
    ev("c2", "10:00", "conversation.created", conversation_id="c2", channel="email"),
]
req = urllib.request.Request(
    f"http://{http}/v1/events", method="POST",
    data="\n".join(json.dumps(e) for e in events).encode(),
    headers={"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"})
with urllib.request.urlopen(req, timeout=30) as r:
    answer = json.load(r)
if answer != {"accepted": 4, "duplicate": 0, "rejected": []}:
    sys.exit(f"psql: FAILED: HTTP POST /v1/events answered {answer}")
print("  ok    HTTP POST /v1/events: 4 accepted")
PY

failed=()
# check NAME EXPECTED... -- PSQL_ARGS...: runs psql; every EXPECTED text
# (a line or several) must appear in its output as it is.
check() {
  local name=$1; shift
  local expected=()
  while [ "$1" != "--" ]; do expected+=("$1"); shift; done
  shift
  local out
  if ! out=$(PGPASSWORD=$token PGCONNECT_TIMEOUT=10 psql -X -w -v ON_ERROR_STOP=1 \
      -h "${pg%:*}" -p "${pg##*:}" -U analyst -d cxdb "$@" 2>&1); then
    echo "  FAIL  $name: psql exited with an error:"; echo "$out" | sed 's/^/        /'
    failed+=("$name"); return
  fi
  local missing=()
  for line in "${expected[@]}"; do
    [[ "$out" == *"$line"* ]] || missing+=("$line")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "  FAIL  $name: missing $(printf '[%s] ' "${missing[@]}")in:"; echo "$out" | sed 's/^/        /'
    failed+=("$name"); return
  fi
  echo "  ok    $name"
}

check '\dt lists the tables' \
  ' public | events             | table' \
  ' public | business_calendars | table' \
  ' public | sla_policies       | table' \
  -- -c '\dt'
check '\dv lists the predefined views' \
  ' public | conversations           | view' \
  ' public | sla_status              | view' \
  ' public | journeys                | view' \
  ' public | bottlenecks             | view' \
  -- -c '\dv'
check '\d conversations describes the view' \
  'View "public.conversations"' \
  ' tenant_id                   | text                     |           | not null |' \
  ' channels                    | text[]                   |' \
  ' created_at                  | timestamp with time zone |' \
  ' first_response_s            | double precision         |' \
  ' csat_score                  | integer                  |' \
  ' is_abandoned                | boolean                  |' \
  -- -c '\d conversations'
check '\x expanded output of a query on the conversations view' \
  'Expanded display is on.' \
  "$(printf '%s\n' '-[ RECORD 1 ]-----+------' 'conversation_id   | c1' 'channel           | chat' \
      'customer_messages | 1' 'agent_messages    | 1' '-[ RECORD 2 ]-----+------' \
      'conversation_id   | c2' 'channel           | email')" \
  -- -c '\x' -c "SELECT conversation_id, channel, customer_messages, agent_messages FROM conversations WHERE tenant_id = '$tenant' ORDER BY conversation_id"
check '\copy (SELECT …) to stdout csv header' \
  "$(printf 'conversation_id,channel,first_response_s,status\nc1,chat,180.0,open\nc2,email,,open')" \
  -- -c "\\copy (SELECT conversation_id, channel, first_response_s, status FROM conversations WHERE tenant_id = '$tenant' ORDER BY 1) to stdout csv header"
check '\copy (SELECT …) to stdout (text format, NULL as \N)' \
  "$(printf 'm1\tcustomer\thello, where is my order?\nm2\tagent\t\\N')" \
  -- -c "\\copy (SELECT event_id, actor_type, body FROM events WHERE tenant_id = '$tenant' AND event_type = 'message.created' ORDER BY 1) to stdout"

if [ ${#failed[@]} -gt 0 ]; then
  echo "psql: ${#failed[@]} FAILED: $(printf '%s; ' "${failed[@]}")"
  exit 1
fi
echo "psql: all checks passed"
