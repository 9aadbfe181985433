import threading

from vedette.store import SegmentStore

THREADS = 16
PER_THREAD = 300


def test_sixteen_threads_every_record_once_in_thread_order(tmp_path):
    with SegmentStore.open(tmp_path / "s", ceiling_bytes=64 << 20, node_id="node-a") as store:
        errors = []

        def writer(t):
            try:
                last = -1
                for i in range(PER_THREAD):
                    pos = store.append(f"{t}:{i}".encode())
                    assert pos > last
                    last = pos
            except Exception as err:  # reported below; a thread cannot fail the test itself
                errors.append(err)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        records = list(store.iter_records())
        assert [p for p, _ in records] == list(range(THREADS * PER_THREAD))
        seen = {t: [] for t in range(THREADS)}
        for _, record in records:
            t, i = record.decode().split(":")
            seen[int(t)].append(int(i))
        assert all(seen[t] == list(range(PER_THREAD)) for t in range(THREADS))
