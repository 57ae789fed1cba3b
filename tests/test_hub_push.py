"""Every push path with a fake `HfApi`: what is uploaded, where, and what is refused (no network)."""

from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
from safetensors.torch import load_file

from finpercep_hf.cards import push_reward_model_to_hub, push_stage_dirs_to_hub, save_reward_model
from finpercep_hf.trainers.generator_card import push_generator_run


class FakeApi:
    """Records ``create_repo`` and every ``upload_folder`` (with the files present at upload time)."""

    calls: list = []

    def create_repo(self, repo_id, **kwargs):
        FakeApi.calls.append(("create", repo_id, kwargs))
        return _Url(repo_id)

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
        FakeApi.calls.append(("upload", kwargs, files))


class _Url(str):
    """What `create_repo` returns: the URL, with ``repo_id``."""

    def __new__(cls, repo_id):
        url = super().__new__(cls, f"https://huggingface.co/{repo_id}")
        url.repo_id = repo_id
        return url


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi.calls


def test_push_reward_model_uploads_model_processor_and_card_in_one_commit(make_rm, fake_api):
    url = push_reward_model_to_hub(make_rm(stage=1), "org/rm", metrics={"ordering_accuracy": 0.75})
    assert url == "https://huggingface.co/org/rm"
    assert fake_api[0] == ("create", "org/rm", {"exist_ok": True})
    (_, upload, files), *rest = fake_api[1:]
    assert not rest and upload["repo_id"] == "org/rm"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)


def test_push_stage_dirs_uploads_each_stage_and_the_last_at_the_root(make_rm, tmp_path, fake_api):
    with pytest.raises(FileNotFoundError, match="nothing pushed"):
        push_stage_dirs_to_hub(tmp_path, "org/rm", [0, 1])
    assert [call[0] for call in fake_api] == ["create"]
    for stage in (0, 1):
        save_reward_model(make_rm(stage=stage), tmp_path / f"finpercep-rm-stage{stage}")
    push_stage_dirs_to_hub(tmp_path, "org/rm", [0, 1])
    uploads = [call[1] for call in fake_api if call[0] == "upload"]
    assert [upload.get("path_in_repo") for upload in uploads] == ["finpercep-rm-stage0", "finpercep-rm-stage1", None]
    assert uploads[-1]["folder_path"] == str(tmp_path / "finpercep-rm-stage1")


def test_push_generator_run_uploads_weights_and_card_without_checkpoints_or_logs(tmp_path, fake_api):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "README.md").write_text("card")
    args = SimpleNamespace(output_dir=str(tmp_path / "."), hub_model_id="org/refl-lora", logging_dir="logs")
    assert push_generator_run(args) == "org/refl-lora"
    (_, upload, files) = fake_api[-1]
    assert upload["repo_id"] == "org/refl-lora" and upload["folder_path"] == str(tmp_path)
    assert upload["ignore_patterns"] == ["checkpoint-*", "logs/*"]
    default = SimpleNamespace(output_dir=str(tmp_path), hub_model_id=None, logging_dir="logs")
    assert push_generator_run(default) == tmp_path.name


def test_saved_reward_model_files_load_without_pickle(make_rm, tmp_path):
    path = save_reward_model(make_rm(stage=1), tmp_path / "rm")
    assert load_file(path / "model.safetensors")
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pkl"))
