import math

import pytest
import torch

from trainables.core.clustering import cache_key, cached_clusters, cluster_features
from trainables.core.config import ConfigError, TrainConfig
from trainables.core.encoder import (
    Encoder,
    EncoderSettings,
    augment,
    encoder_features,
    nt_xent,
    train_encoder,
)



@pytest.fixture(autouse=True)
def one_thread():
    # tiny convs: a second thread only adds synchronisation, and on a busy machine much more
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = EncoderSettings(width=4, dim=8, proj_dim=8, epochs=2, batch_size=16)


def images(n=32, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_augment_keeps_shape_and_follows_the_generator():
    x = images()
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, images())  # input untouched


def test_nt_xent_by_hand():
    # 2 images, twins identical, the two images orthogonal: each row sees its twin at cos 1
    # and two other views at cos 0, so the loss is -log(e^(1/T) / (e^(1/T) + 2)).
    T = 0.5
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.exp(1 / T) / (math.exp(1 / T) + 2))
    assert nt_xent(z, T).item() == pytest.approx(expected, rel=1e-5)
    # swapping the twins' order makes every positive a cos-0 pair: a larger loss
    assert nt_xent(z[[0, 1, 3, 2]], T).item() > expected


def test_encoder_shapes():
    assert Encoder(1, width=4, dim=8)(images(5)).shape == (5, 8)
    assert Encoder(1, width=4, dim=8)(torch.randn(3, 1, 28, 28)).shape == (3, 8)


def test_train_encoder_is_deterministic():
    x = images()
    a = train_encoder(x, TINY)
    b = train_encoder(x, TINY)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="images"):
        train_encoder(torch.randn(10, 64), TINY)


def test_encoder_features_are_cached_and_keyed_by_settings(tmp_path):
    x = images()
    f1 = encoder_features(x, "data-a", tmp_path, TINY)
    files = list((tmp_path / "encoders").glob("*.pt"))
    assert f1.shape == (32, TINY.dim) and len(files) == 1
    f2 = encoder_features(x, "data-a", tmp_path, TINY)  # loaded, not retrained
    assert torch.equal(f1, f2)
    encoder_features(x, "data-a", tmp_path, EncoderSettings(**{**TINY.__dict__, "epochs": 1}))
    encoder_features(x, "data-b", tmp_path, TINY)
    assert len(list((tmp_path / "encoders").glob("*.pt"))) == 3
    assert not list((tmp_path / "encoders").glob("*.tmp"))


def test_cluster_features_encoder_and_cache_key(tmp_path):
    x = images(40)
    f = cluster_features(x, "encoder", data_key="d", cache_dir=tmp_path)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(40))
    assert cache_key("d", "encoder", 32, 5, 0) != cache_key("d", "pca", 32, 5, 0)
    assert cache_key("d", "encoder", 32, 5, 0) != cache_key("d", "raw", 32, 5, 0)
    c = cached_clusters(x, "d", "encoder", 4, 0, cache_dir=tmp_path)
    assert c.assign.shape == (40,) and not c.cache_hit
    assert cached_clusters(x, "d", "encoder", 4, 0, cache_dir=tmp_path).cache_hit
    with pytest.raises(ValueError, match="encoder"):
        cluster_features(x, "sift")


def test_config_accepts_encoder_features():
    assert TrainConfig(cluster_features="encoder").cluster_features == "encoder"
    with pytest.raises(ConfigError, match="cluster_features"):
        TrainConfig(cluster_features="simclr")
