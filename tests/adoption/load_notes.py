"""Write load on the notebook project, run inside its own virtualenv by the adoption test.

Signed-in users add notes through the project's own pages (Django's test
client, so every request runs the middleware, the router and the views) until
STOP_FILE appears or MAX_SECONDS pass. Every acknowledged note (201) is
appended to LEDGER as ``user_id note_id body``; anything else a user sees
(a non-2xx answer or an exception) is appended to ERRORS. Reads of the
notebook page are checked to show every note the user was told was stored.

    python load_notes.py LEDGER ERRORS STOP_FILE USER_ID:NOTEBOOK_ID [...]
"""

import os
import sys
import threading
import time

MAX_SECONDS = 300


def main() -> None:
    ledger_path, errors_path, stop_path, *pairs = sys.argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notebook_site.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    lock = threading.Lock()
    deadline = time.monotonic() + MAX_SECONDS

    def record(path: str, line: str) -> None:
        with lock, open(path, "a") as handle:
            handle.write(line + "\n")

    def user_loop(user_id: int, notebook_id: int) -> None:
        client = Client()
        client.force_login(get_user_model().objects.get(pk=user_id))
        mine: list[str] = []
        n = 0
        while not os.path.exists(stop_path) and time.monotonic() < deadline:
            n += 1
            body = f"u{user_id}-n{n}"
            try:
                response = client.post(f"/notebooks/{notebook_id}/add/", {"body": body})
                if response.status_code != 201:
                    record(errors_path, f"{user_id} add {response.status_code} {response.content[:200]!r}")
                    continue
                record(ledger_path, f"{user_id} {response.json()['id']} {body}")
                mine.append(body)
                if n % 10 == 0:
                    page = client.get(f"/notebooks/{notebook_id}/")
                    missing = [b for b in mine if b not in page.content.decode()]
                    if page.status_code != 200 or missing:
                        record(errors_path, f"{user_id} read {page.status_code} missing {missing[:5]}")
            except Exception as exc:
                record(errors_path, f"{user_id} {type(exc).__name__}: {exc}")
            time.sleep(0.02)

    threads = []
    for pair in pairs:
        user_id, notebook_id = (int(x) for x in pair.split(":"))
        thread = threading.Thread(target=user_loop, args=(user_id, notebook_id))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
