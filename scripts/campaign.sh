#!/bin/sh
# A seeded fault campaign on loopback (kill -9 of jazarid and agents, failing store batches)
# under sustained load; prints one JSON object. Builds nothing: uses BUILD/bin (default build/).
#   scripts/campaign.sh [--build DIR] [--seconds 60] [--seed N] [--agents 2] [--check]
# See scripts/campaign.py for what each number means, and docs/testing.md.
exec python3 "$(dirname "$0")/campaign.py" "$@"
