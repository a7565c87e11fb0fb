"""Entry script of the frozen app (packaging/latent-studio.spec): the same `latent-studio` command as when installed."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must run its task, not the app
    if sys.argv[1:] == ["--latent-studio-worker"]:  # the worker process of studio.engine.sandbox (WORKER_FLAG)
        from studio.engine.child import main as worker

        raise SystemExit(worker())

    from studio.cli import entry

    entry()  # main(), then exit (at once when an engine worker is still inside torch)
