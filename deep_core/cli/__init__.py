"""Command-line entry points (thin: parse, build typed configs, call the library).

Threads: OpenMP threads that spin while they wait take the cores the other threads need;
on a shared machine a second thread then made training 1.6× slower instead of faster.
Unless the user set it, the CLIs make OpenMP threads sleep while waiting
(``OMP_WAIT_POLICY=PASSIVE``); it must be set before torch is imported, which is why it
is set here, the first module of every entry point.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
