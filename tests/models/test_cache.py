"""The one model cache: every kind of model loads once per key, even from threads that start together."""
import threading
import time

from deforum_engine.models.cache import cached_model, forget_models, loaded_models


def test_threads_asking_together_load_a_model_once_and_forgetting_loads_it_again():
    loads = []

    def load():
        loads.append(1)
        time.sleep(0.05)  # long enough for the other threads to ask meanwhile
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cached_model("test-kind", ("a", "cpu"), load)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(model) for model in got}) == 1
    assert cached_model("test-kind", ("b", "cpu"), load) is not got[0] and len(loads) == 2
    assert sorted(loaded_models("test-kind")) == [("test-kind", "a", "cpu"), ("test-kind", "b", "cpu")]
    forget_models("test-kind")
    assert loaded_models("test-kind") == [] and cached_model("test-kind", ("a", "cpu"), load) is not got[0]
    forget_models("test-kind")
