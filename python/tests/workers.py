"""Child-process bodies for test_processes.py (importable by multiprocessing's spawn)."""
import sys

import kvstore


def write_many(path, prefix, n):
    """Puts n keys of its own and increments a shared counter n times."""
    with kvstore.open(path, "w") as db:
        for i in range(n):
            db["%s/%d" % (prefix, i)] = "%s-%d" % (prefix, i)
            db.increment("counter")


def ack_writer(path):
    """Puts k0, k1, ... for ever, printing each index once put returned: the
    parent kills it at a random moment and checks every printed key."""
    with kvstore.open(path, "c") as db:
        i = 0
        while True:
            db["k%d" % i] = "v%d" % i
            with db.transaction() as tx:  # a batch too: both keys or neither
                tx["t%d/a" % i] = "x"
                tx["t%d/b" % i] = "y"
            sys.stdout.write("%d\n" % i)
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    ack_writer(sys.argv[1])
