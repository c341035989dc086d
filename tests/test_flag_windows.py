"""A flag window carries each evaluation whole: its yes or no together with its variant.

The server ignores a flag whose window says ``yes == no == 0`` (variant counts alone are not
stored), so a window that carried a variant without the evaluation it belongs to would lose
it. Recorders race collects here, with the interpreter switching threads as often as it can.
"""

from __future__ import annotations

import json
import sys
import threading

import impactagent

THREADS = 4
EVALUATIONS = 40_000  # per thread


def test_every_window_carries_each_variant_with_its_evaluation():
    agent = impactagent.Agent("flags")
    go = threading.Event()

    def evaluate(index: int) -> None:
        go.wait()
        for i in range(EVALUATIONS):
            agent.record_flag("new-checkout", (i + index) % 3 != 0, "blue" if i % 2 else "red")

    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    windows = []
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as the interpreter can
    try:
        go.set()
        while any(thread.is_alive() for thread in threads):
            windows.append(agent.build_payloads(agent.collect()))
        windows.append(agent.build_payloads(agent.collect()))
    finally:
        sys.setswitchinterval(old)
    for thread in threads:
        thread.join()
    sent = {"yes": 0, "no": 0, "blue": 0, "red": 0}
    for payloads in windows:
        for payload in payloads:
            toggles = json.loads(payload.body)["bucket"]["toggles"]
            for toggle in toggles.values():
                variants = toggle["variants"]
                # Each variant arrives with the yes or no it was counted in.
                assert sum(variants.values()) <= toggle["yes"] + toggle["no"], toggle
                sent["yes"] += toggle["yes"]
                sent["no"] += toggle["no"]
                for name, n in variants.items():
                    sent[name] += n
    total = THREADS * EVALUATIONS
    assert len(windows) > 10  # the collects really raced the recorders
    assert sent["yes"] + sent["no"] == total
    assert sent["blue"] + sent["red"] == total, sent  # no variant left out of a body
    assert agent.statistics()["dropped"] == {}
