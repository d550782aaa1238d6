import sys
from pathlib import Path

# lets the test modules import the shared hypothesis strategies as a plain module
sys.path.insert(0, str(Path(__file__).parent))
