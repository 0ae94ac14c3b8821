"""CIFAR-10 and the CIFAR-N label sets on the real shared copy (skipped when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from deep_core.datasets import DataConfig, load_dataset
from deep_core.datasets.cifar_n import load_human_labels, read_official_pt
from deep_core.errors import DeepCoreError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
pytestmark = pytest.mark.shared

EXPECTED = {"realA": 0.0901, "real1": 0.1723, "real2": 0.1812, "real3": 0.1764, "realW": 0.4021}


@pytest.mark.parametrize("noise_type, rate", sorted(EXPECTED.items()))
def test_cifar10n_noise_rates_are_exact(cifar10_root, noise_type, rate):
    ds = load_dataset(
        DataConfig(dataset="CIFAR10", data_path=str(cifar10_root), noise_type=noise_type)
    )
    assert len(ds.labels) == 50000 and len(ds.test_labels) == 10000
    assert round(ds.realised_noise_rate(), 4) == rate
    assert ds.train.image_shape == (3, 32, 32)


def test_cifar100n_shipped_labels_have_the_published_rate():
    human = load_human_labels("CIFAR100")
    assert round(float((human["noisy_label"] != human["clean_label"]).mean()), 4) == 0.4020


def test_official_pt_files_are_read_safely_and_match_the_shipped_copy():
    pt = SHARED / "data" / "cifar-n" / "CIFAR-10_human.pt"
    if not pt.is_file():
        pytest.skip("official CIFAR-N file not available")
    official = read_official_pt(pt)
    shipped = load_human_labels("CIFAR10")
    for key in (
        "clean_label",
        "aggre_label",
        "random_label1",
        "random_label2",
        "random_label3",
        "worse_label",
    ):
        assert np.array_equal(official[key], shipped[key])


def test_both_folder_layouts_and_sym_noise(cifar10_root, tmp_path):
    ref_layout = tmp_path / "DATA" / "cifar10"
    ref_layout.mkdir(parents=True)
    (ref_layout / "cifar-10-batches-py").symlink_to(cifar10_root / "cifar-10-batches-py")
    ds = load_dataset(
        DataConfig(
            dataset="CIFAR10",
            data_path=str(tmp_path / "DATA"),
            noise_type="sym",
            noise_rate=0.2,
            seed=1,
            n_train=1000,
        )
    )
    assert len(ds.labels) == 1000
    assert (ds.labels != ds.clean_labels).sum() == 200  # noise drawn after the cut: exact


def test_incomplete_folder_is_a_clear_error(cifar10_root, tmp_path):
    broken = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar10_root / "cifar-10-batches-py", broken)
    (broken / "data_batch_3").unlink()
    with pytest.raises(DeepCoreError, match="data_batch_3 is missing"):
        load_dataset(DataConfig(dataset="CIFAR10", data_path=str(tmp_path), noise_type="clean"))


def test_short_label_file_beside_the_batches_is_exit_2_and_no_run(cifar10_root, tmp_path, capsys):
    import torch

    from deep_core.cli.run import main

    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)
    for f in (cifar10_root / "cifar-10-batches-py").iterdir():
        (data / "cifar-10-batches-py" / f.name).symlink_to(f)
    short = {"clean_label": torch.zeros(100, dtype=torch.long), "worse_label": torch.zeros(100)}
    for folder in (data, data / "cifar-10-batches-py"):
        torch.save(short, folder / "CIFAR-10_human.pt")
    out = tmp_path / "runs"
    code = main(["--dataset", "CIFAR10", "--data_path", str(data), "--noise-type", "realW",
                 "--out-dir", str(out), "--dry-run", "--progress", "False"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: CIFAR-N array"), err
    assert "expected (50000,)" in err[-1]
    assert not out.exists() or not [p for p in out.iterdir() if p.name != "signals-cache"]
