"""The example project and its fixes are a separate Django project with its own settings: never collected here."""

collect_ignore_glob = ["notebook/*", "fixed/*"]
