import json

from PIL import Image

from finpercep_hf import FinPercepRewardModel
from finpercep_hf.quickstart import QuickstartConfig, run_quickstart


def test_quickstart_end_to_end_small(tmp_path):
    config = QuickstartConfig(
        train_photos=("astronaut", "coffee", "camera"), heldout_photos=("chelsea",), train_samples=16,
        heldout_samples=6, crop_size=64, train_crop_size=48, hidden_size=32, decoder_channels=16,
        ccl_schedule="0:0,0:1,2:2,4:3", max_steps=6, lora_ranks="2,4", batch_size=4, num_overlays=2,
    )  # fmt: skip
    messages = []
    report = run_quickstart(tmp_path, config, log=messages.append)
    text = report.read_text()
    for stage in range(4):
        assert f"| RM_{stage} |" in text
        model = FinPercepRewardModel.from_pretrained(tmp_path / "rm" / f"finpercep-rm-stage{stage}")
        assert model.config.stage == stage
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["stage"] for row in metrics["stages"]] == ["RM_0", "RM_1", "RM_2", "RM_3"]
    assert "pdm_auroc" not in metrics["stages"][0] and 0 <= metrics["stages"][3]["pdm_auroc"] <= 1
    assert sum(row["samples"] for row in metrics["artifact_kinds"]) == 6  # every held-out row in one kind
    assert "chelsea" in text and "never seen in training" in text
    overlays = sorted((tmp_path / "figures").glob("overlay_*.png"))
    assert len(overlays) == 2 and all(f"]({p.relative_to(tmp_path)})" in text for p in overlays)
    with Image.open(tmp_path / "figures" / "losses.png") as plot:
        assert plot.format == "PNG"
    assert any(message.startswith("report:") for message in messages)
