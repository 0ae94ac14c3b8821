"""Select a subset of a noisy training set and train a robust learner on it.

Same as the ``deepcore-run`` console script; flags are compatible with the Prune4ReL
reference (``python main_label_noise.py --help``).
"""

import sys

from deep_core.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
