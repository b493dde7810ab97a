"""What the host and the guest agree on: console markers and the files the guest writes.

The guest writes into the reports directory, which the host shares with it (``vng --rwdir``) at
the same path, so the host reads the guest's files directly once the guest has gone.
"""

from __future__ import annotations

# Console lines. The first shows the guest command started (so the boot worked); the second that it
# wrote its result (the host then allows GRACE_AFTER_DONE seconds for the VM to power off).
START_MARKER = "lane-guest: started"
DONE_MARKER = "lane-guest: done"
GRACE_AFTER_DONE = 30.0

GUEST_RESULT = "guest.json"  # {"mode", "runs": {name: {"exit", "seconds", ...}}, "failure"?, ...}
DMESG = "dmesg.txt"  # the guest's kernel log, followed live (kept if the guest hangs)
KERNEL_INFO = "kernel.txt"  # uname and /proc/version inside the guest
KERNEL_CONFIG = "kernel-config"  # the kernel's .config (the host copies the artefact's)
DEVICES = "devices.json"  # the mtty devices created for each run
SMOKE = "smoke.json"  # what the smoke mode found
PYTEST_LOG = "pytest.log"  # each run's console output, in its own directory
