"""Journal cost per device: mark_sending + record, each a durable commit (fsync).

python benchmarks/journal_overhead.py [DEVICES] [DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from pcsid_async import OutcomeState, RenewalJournal, RenewalOutcome, RenewalRequest


def main() -> None:
    devices = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    where = sys.argv[2] if len(sys.argv) > 2 else None
    with tempfile.TemporaryDirectory(dir=where) as tmp, RenewalJournal(Path(tmp) / "j.db") as j:
        j.begin(vat="300000000000003")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(devices):
            request = RenewalRequest(f"device-{i:06d}", f"{i:06d}")
            j.decide(request)
            j.mark_sending(request.device_id, request.otp)
            j.record(
                RenewalOutcome(
                    request=request,
                    state=OutcomeState.RENEWED,
                    result=None,
                    activity=None,
                    error=None,
                    attempts=1,
                    elapsed=0.1,
                )
            )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        export = time.perf_counter()
        lines = j.export_jsonl(Path(tmp) / "r.jsonl")
        export = time.perf_counter() - export
    print(
        f"{devices} devices: {wall / devices * 1e6:.0f} us wall, {cpu / devices * 1e6:.0f} us CPU "
        f"per device (decide + mark_sending + record); "
        f"export of {lines} lines {export * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
