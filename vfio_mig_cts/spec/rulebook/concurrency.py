"""Rules of the concurrency suite: races between a reset, state changes, readers and a second open.

The uAPI says little about concurrency in so many words. What it does say: no state change happens
but those the user or a reset asks for (so a racing pair ends as one of its serial orders would); a
data fd reaches end of stream or error whenever its session is left; STOP_COPY's fd polls readable.
How drivers keep a racing reset from deadlocking is a convention (mlx5 and mtty defer the reset to
the state mutex's unlock); two readers on one data fd being served one after the other is another
(every upstream driver takes the migration file's mutex in read()).
"""

from __future__ import annotations

from vfio_mig_cts.spec.rule import Family, Force, Rule

H = "include/uapi/linux/vfio.h"
K = "include/linux/vfio.h"
C = "drivers/vfio/vfio_main.c"
MTTY = "samples/vfio-mdev/mtty.c"
MLX5 = "drivers/vfio/pci/mlx5/main.c"
M, CV = Force.MUST, Force.CONVENTION
X = Family.CONCURRENCY

RULES_PART: tuple[Rule, ...] = (
    Rule("CONC.RESET_RACE", X, M, f"{H}:1027",
         "The kernel migration driver must not generate asynchronous device state transitions outside of "
         "manipulation by the user or the VFIO_DEVICE_RESET ioctl as described above.",
         "a VFIO_DEVICE_RESET racing a SET leaves the device where one of the two serial orders would: "
         "RUNNING (the reset last) or the SET's target (the SET last); a SET that failed leaves RUNNING"),
    Rule("CONC.DEAD_SESSION", X, M, f"{K}:192",
         "The driver is responsible to ensure that FD reaches end of stream or error whenever the migration "
         "FSM leaves a data transfer state or before close_device() returns.",
         "no data comes out of a session that a racing reset or state change ended (checked only where "
         "the same reset without a race does end it)"),
    Rule("CONC.NO_DEADLOCK", X, CV, f"{MLX5}:1298",
         "As the higher VFIO layers are holding locks across reset and using those same locks with the "
         "mm_lock we need to prevent ABBA deadlock with the state_mutex and mm_lock.",
         "every call of a race returns within the race timeout (mlx5 and mtty defer a reset that finds the "
         "state mutex held to that mutex's unlock, so neither side waits on the other)"),
    Rule("CONC.SHARED_READS", X, CV, f"{MTTY}:895",
         "mutex_lock(&migf->lock);",
         "two threads reading one saving fd together get disjoint pieces of the one stream, which add up "
         "to exactly the stream a single reader gets (every upstream driver's read() holds the "
         "migration file's mutex); judged where the device saved the same bytes in two single-reader "
         "sessions (no driver promises it), otherwise only how each reader's stream ends"),
    Rule("CONC.POLL_WAKE", X, M, f"{H}:1268",
         "Once in STOP_COPY the migration data FD has a permanent end of stream signaled in the usual way by "
         "read() always returning 0 and poll always returning readable.",
         "a poll() blocked on a PRE_COPY fd at its temporary end of stream is woken with POLLIN when another "
         "thread moves the device to STOP_COPY: it returns before its own timeout (the only bound the test "
         "sets)"),
    Rule("CONC.SECOND_OPEN", X, M, f"{C}:570",
         "Only the group path allows the device to be opened multiple times.",
         "opening a device in use a second time either fails (the cdev path: EINVAL) or shares it: the "
         "first user's state and data session are untouched by the second open and by its close "
         "(open_device and close_device run only for the first open and the last close): GET still reports "
         "STOP_COPY and the session's stream, judged on its own, ends with 0, loads on a compatible device "
         "and restores the source's state"),
)
