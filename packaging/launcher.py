"""Entry script of the frozen app (packaging/latent-studio.spec): the same `latent-studio` command as when installed."""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen child process must run its task, not the app

    from studio.cli import main

    raise SystemExit(main())
