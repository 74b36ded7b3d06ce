"""`make bench`: every benchmark in this folder, one after another, each printing its own ratios."""
import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
failed = []
for script in sorted(here.glob("*.py")):
    if script.name == "run_all.py":
        continue
    print(f"=== {script.stem}", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.stem)
sys.exit(f"failed: {failed}" if failed else 0)
