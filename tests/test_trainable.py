import pickle

import pytest
import ray

from trainables.core.config import TrainConfig
from trainables.core.data import load_dataset
from trainables.trainable import SharedDataset, trial_config


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_shared_dataset_is_a_small_handle_fetched_once_per_process(local_ray):
    data = load_dataset(TrainConfig())
    handle = SharedDataset(data)
    assert len(pickle.dumps(handle)) < 2000  # what every trial receives: a reference, not the data
    first = handle.get()
    assert first is handle.get()  # the second trial in this worker reuses the copy
    assert first.fingerprint == data.fingerprint and first.x_train.shape == data.x_train.shape

    @ray.remote
    def twice(h):
        return h.get() is h.get(), h.get().fingerprint

    same, fingerprint = ray.get(twice.remote(handle))
    assert same and fingerprint == data.fingerprint


def test_trial_config_puts_searched_values_on_the_base_and_ignores_others():
    cfg = trial_config(TrainConfig(epochs=3).to_dict(), {"k": 7, "method": "icm", "not_a_field": 1})
    assert (cfg.k, cfg.method, cfg.epochs) == (7, "icm", 3)
