import torch

from trainables.core.clustering import cached_clusters, cluster_features, kmeans


def blobs(n_per=50, k=4, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 10
    x = torch.cat([centers[i] + torch.randn(n_per, d, generator=g) for i in range(k)])
    return x, torch.arange(k).repeat_interleave(n_per)


def test_kmeans_recovers_separated_blobs():
    x, y = blobs()
    res = kmeans(x, 4, torch.Generator().manual_seed(0))
    # each true blob maps to exactly one cluster
    for c in range(4):
        assert res.assign[y == c].unique().numel() == 1
    assert res.assign.unique().numel() == 4


def test_kmeans_inertia_matches_sklearn():
    from sklearn.cluster import KMeans

    x, _ = blobs(n_per=80, k=6, d=5, seed=2)
    ours = kmeans(x, 6, torch.Generator().manual_seed(0))
    ref = KMeans(6, n_init=4, random_state=0).fit(x.numpy())
    assert ours.inertia <= ref.inertia_ * 1.01


def test_features_are_l2_normalised():
    x = torch.randn(30, 1, 8, 8)
    for kind in ("raw", "pca"):
        f = cluster_features(x, kind, pca_dim=5)
        torch.testing.assert_close(f.norm(dim=1), torch.ones(30))
    assert cluster_features(x, "pca", pca_dim=5).shape == (30, 5)


def test_cache_is_reused_and_keyed(tmp_path):
    x = torch.randn(60, 1, 8, 8)
    a = cached_clusters(x, "data-a", "pca", 5, 0, pca_dim=8, cache_dir=tmp_path)
    b = cached_clusters(x, "data-a", "pca", 5, 0, pca_dim=8, cache_dir=tmp_path)
    assert not a.cache_hit and b.cache_hit and a.path == b.path
    assert torch.equal(a.assign, b.assign)
    c = cached_clusters(x, "data-a", "pca", 6, 0, pca_dim=8, cache_dir=tmp_path)
    d = cached_clusters(x, "data-b", "pca", 5, 0, pca_dim=8, cache_dir=tmp_path)
    assert not c.cache_hit and not d.cache_hit
    assert len(list((tmp_path / "clusters").glob("*.pt"))) == 3
    assert not list((tmp_path / "clusters").glob("*.tmp"))


def test_corrupt_cache_file_is_recomputed(tmp_path):
    x = torch.randn(40, 1, 8, 8)
    a = cached_clusters(x, "d", "raw", 3, 0, cache_dir=tmp_path)
    a.path.write_bytes(b"garbage")
    b = cached_clusters(x, "d", "raw", 3, 0, cache_dir=tmp_path)
    assert not b.cache_hit and torch.equal(a.assign, b.assign)


def test_cache_key_names_the_device(tmp_path):
    """A clustering written by a GPU node is never read by a CPU run (k-means differs across devices)."""
    from trainables.core.clustering import cache_key

    assert cache_key("d", "pca", 8, 5, 0, "cpu") != cache_key("d", "pca", 8, 5, 0, "cuda")
    x = torch.randn(60, 1, 8, 8)
    # a foreign clustering planted where a cuda run would write it
    cuda_path = tmp_path / "clusters" / f"{cache_key('d', 'pca', 8, 5, 0, 'cuda')}.pt"
    cuda_path.parent.mkdir(parents=True)
    torch.save({"assign": torch.zeros(60, dtype=torch.long), "inertia": 0.0, "k": 5, "features": "pca"}, cuda_path)
    a = cached_clusters(x, "d", "pca", 5, 0, pca_dim=8, cache_dir=tmp_path)
    assert a.path.name == f"{cache_key('d', 'pca', 8, 5, 0, 'cpu')}.pt" and a.path != cuda_path
    assert not a.cache_hit and len(a.assign.unique()) == 5


def test_encoder_cache_names_the_device_too(tmp_path):
    from trainables.core import encoder

    x = torch.rand(40, 1, 8, 8)
    cluster_features(x, "encoder", data_key="d", cache_dir=tmp_path)
    names = {p.name for p in (tmp_path / "encoders").glob("*.pt")}
    assert names == {f"{encoder.cache_key('d|cpu', encoder.DEFAULT_SETTINGS)}.pt"}
