"""The fleet simulation at CI size, on SQLite and on PostgreSQL: devices doing random field work through a
fault-injecting proxy, killed mid-sync, a server killed and restarted, the office changing jobs meanwhile;
zero invariant violations at the end. The large run is `python -m tests.reliability.fleet` (docs/reliability.md).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.server.conftest import BACKENDS

from .fleet import FleetConfig, run_fleet

# CI size: a few minutes on a 2-core machine; FIELDSYNC_FLEET_OPERATIONS raises it
OPERATIONS = int(os.environ.get("FIELDSYNC_FLEET_OPERATIONS", "1200"))


@pytest.mark.e2e
@pytest.mark.parametrize("backend", BACKENDS)
def test_fleet_under_faults_keeps_every_invariant(backend, tmp_path):
    config = FleetConfig(devices=12, operations=OPERATIONS, backend=backend, seed=7)
    figures = run_fleet(config, tmp_path)
    print(json.dumps(figures, indent=2))  # the run's figures, shown with -s or on failure
    details = figures["details"]
    assert figures["violations"] == 0, json.dumps(details["violation_list"], indent=2)
    # the run really met the faults it is meant to survive
    assert figures["operations"] >= OPERATIONS
    assert all(count > 0 for count in figures["faults"].values()), figures["faults"]
    assert figures["kills"] > 0 and figures["server_restarts"] == 1
    assert sum(details["office_actions"].values()) > 0
    assert details["receipts_by_status"].get("conflict", 0) > 0, "two handhelds of one user never collided"
