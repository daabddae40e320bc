"""Every registered detector on SKAB valve1 and NAB, with the default's other settings.

    python bench/detectors.py [--data DIR] [--kinds pca_spc,iforest,...]

Same protocol and code path as ``bench/detection.py`` (``plantwatch backtest`` per file); only
``detector.kind`` changes, each with its default parameters (``pyod`` needs a model name and is
left out). The alarm levels, features, window and calibration were chosen for ``pca_spc`` on SKAB
files 0-7, so the other rows show what swapping the detector alone does, not each one's best.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import tempfile
import time
from pathlib import Path
from types import ModuleType

from detector.registry import available


def _detection_bench() -> ModuleType:
    path = Path(__file__).resolve().parent / "detection.py"
    spec = importlib.util.spec_from_file_location("plantwatch_bench_detection", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    bench = _detection_bench()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    parser.add_argument("--kinds", help="comma-separated detector kinds (default: every registered one but pyod)")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",") if args.kinds else [k for k in available() if k != "pyod"]
    base = bench.detector_config(None)
    files = sorted(int(p.stem) for p in (args.data / "skab" / "valve1").glob("*.csv") if p.stem.isdigit())
    print(f"{'detector':<10}{'SKAB all F1/FAR/MAR':>22}{'files 0-7':>18}{'files 8-15':>18}{'NAB':>7}{'rows/s':>9}")
    for kind in kinds:
        config = dataclasses.replace(base, detector=kind, detector_params={})
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            started = time.perf_counter()
            skab = bench.run_skab(args.data, files, config, tmp, False)
            nab = bench.run_nab(args.data, config, tmp, False)
            rows = skab["rows"] + nab["rows"]
            speed = rows / (time.perf_counter() - started)
        cells = []
        for subset in (files, [k for k in files if k < 8], [k for k in files if k >= 8]):
            p = bench.pool_skab([skab["per_file"][f"valve1/{k}.csv"] for k in subset])
            cells.append(f"{p['f1']:.2f}/{100 * p['far']:.1f}/{100 * p['mar']:.1f}")
        print(f"{kind:<10}{cells[0]:>22}{cells[1]:>18}{cells[2]:>18}{nab['corpus']['score']:>7.1f}{speed:>9,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
