"""The measurements of bench_gpu.py, each run in a child process: the model build and data,
medvl SFT (its real ``run_sft`` path), TRL SFTTrainer, and medvl's HF engine for prediction.

See bench_gpu.py's docstring for what is counted and how."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

PEAK_TFLOPS = 790.0  # dense bf16 matmul measured on this workplace's H200 (KINDS.md)
#: Qwen2-VL-2B-Instruct's config.json (text: hidden 1536, 28 layers, 12 heads, 2 KV heads,
#: intermediate 8960, vocab 151936, tied embeddings; vision: embed_dim 1280, depth 32, 16 heads,
#: mlp_ratio 4), as medvl.models.tiny.TinySize fields.
QWEN2_VL_2B = dict(
    text_hidden=1536,
    text_layers=28,
    text_heads=12,
    text_kv_heads=2,
    text_intermediate=8960,
    vision_hidden=1280,
    vision_depth=32,
    vision_heads=16,
    vision_intermediate=5120,
)
VOCAB = 151_936
#: Pixels of a 448 x 448 image: 256 image tokens after Qwen2-VL's 2 x 2 merge ("long" runs).
LONG_PIXELS = 448 * 448


class Settings:
    """Sizes and caps for the GPU run or the CPU dry run."""

    def __init__(self, dry: bool):
        import torch

        self.dry = dry
        self.cuda = torch.cuda.is_available() and not dry
        self.batch = 4 if dry else 16
        self.records = 64 if dry else 512
        self.warm_steps = 1 if dry else 3
        self.train_cap = 4.0 if dry else 25.0  # seconds of timed steps
        self.child_timeout = 150 if dry else 110  # whole child: imports, load, train, save
        self.predict_batch = 8 if dry else 32
        self.predict_tokens = 16 if dry else 64
        self.predict_cap = 10.0 if dry else 25.0
        self.precision = "bf16" if self.cuda else "fp32"
        self.long_pixels = 112 * 112 if dry else LONG_PIXELS


def batch_of(options: dict, settings: Settings) -> int:
    """The batch of one run: its own ``batch`` option (scaled down on a dry run) or the default."""
    if "batch" not in options:
        return settings.batch
    return max(1, options["batch"] // 4) if settings.dry else options["batch"]


# ---------------------------------------------------------------- model and data (child "build")
def build(work: Path, dry: bool) -> dict[str, Any]:
    """Write the random model folder and the phantom data; return their paths and size."""
    import torch
    from transformers import AutoModelForImageTextToText

    from medvl.data.phantom import generate_phantom
    from medvl.models import tiny
    from medvl.models.registry import get_family
    from medvl.models.tokenizer import build_tokenizer

    settings = Settings(dry)
    tiny.SIZES["gpu_bench"] = tiny.SIZES["tiny"] if dry else tiny.TinySize(**QWEN2_VL_2B)
    tokenizer = build_tokenizer("qwen2_vl")
    config = tiny.build_tiny_config("qwen2_vl", tokenizer, "gpu_bench")
    config.text_config.vocab_size = VOCAB
    config.tie_word_embeddings = True  # as the real 2B
    config.text_config.tie_word_embeddings = True
    device = "cuda" if settings.cuda else "cpu"
    dtype = torch.bfloat16 if settings.cuda else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config = tiny.build_generation_config(tiny.token_ids(tokenizer))
    params = sum(p.numel() for p in model.parameters())
    folder = work / "model"
    model.save_pretrained(folder)
    tiny.build_processor(get_family("qwen2_vl"), tokenizer).save_pretrained(folder)
    del model
    summary = generate_phantom(work / "phantom", n=settings.records, seed=0, test_fraction=0.3)
    return {
        "model": str(folder),
        "parameters": params,
        "train": str(summary.split_paths["train"]),
        "test": str(summary.split_paths["test"]),
    }


# ---------------------------------------------------------------- timing shared by SFT children
def timing_callback(
    settings: Settings, result: dict[str, Any], result_file: Path, batch: int | None = None
) -> Any:
    """A TrainerCallback that counts tokens (forward pre-hook), times steps, stops at the cap
    and writes the result at train end (before the run's own final save)."""
    import torch
    from transformers import TrainerCallback

    def sync() -> None:
        if settings.cuda:
            torch.cuda.synchronize()

    class Timing(TrainerCallback):
        tokens = 0
        labelled = 0  # stays 0 where the loss is computed outside forward (medvl)
        loss: float | None = None
        marks: list[tuple[float, int, int]] = []  # noqa: RUF012 (one instance per process)

        def _count(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
            labels = kwargs.get("labels")
            if ids is None and args:
                ids = args[0]
            if mask is not None and mask.dim() == 2:
                self.tokens += int(mask.sum())
            elif ids is not None:
                self.tokens += ids.numel()
            if labels is not None:
                self.labelled += int((labels != -100).sum())

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw):
            model.register_forward_pre_hook(self._count, with_kwargs=True)
            total = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            result.update(parameters=total, trainable=trainable)
            if settings.cuda:
                torch.cuda.reset_peak_memory_stats()
            sync()
            self.marks = [(time.perf_counter(), 0, 0)]

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kw):
            sync()
            self.marks.append((time.perf_counter(), self.tokens, self.labelled))
            timed = len(self.marks) - 1 - settings.warm_steps
            if timed >= 2 and self.marks[-1][0] - self.marks[settings.warm_steps][0] > (
                settings.train_cap
            ):
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kw):
            start = self.marks[min(settings.warm_steps, len(self.marks) - 2)]
            end = self.marks[-1]
            seconds = end[0] - start[0]
            steps = len(self.marks) - 1 - self.marks.index(start)
            tokens, labelled = end[1] - start[1], end[2] - start[2]
            n, k = result["parameters"], result["trainable"]
            per_token = 6 * n if k >= 0.99 * n else 4 * (n - k) + 6 * k
            rate = tokens / seconds if seconds > 0 else 0.0
            result.update(
                timed_steps=steps,
                timed_seconds=round(seconds, 3),
                tokens_per_s=round(rate, 1),
                labelled_tokens_per_s=round(labelled / seconds, 1) if labelled else None,
                tokens_per_step=round(tokens / max(steps, 1), 1),
                samples_per_s=round(steps * (batch or settings.batch) / seconds, 2)
                if seconds
                else 0.0,
                flops_per_token=per_token,
                mfu=round(per_token * rate / (PEAK_TFLOPS * 1e12), 4) if settings.cuda else None,
                peak_memory_gib=peak_memory(settings),
                train_loss=None if self.loss is None else round(self.loss, 4),
            )
            result_file.write_text(json.dumps(result))

    return Timing()


def peak_memory(settings: Settings) -> float:
    """GiB: torch.cuda.max_memory_allocated on the GPU, the process's peak RSS on CPU."""
    import torch

    if settings.cuda:
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def run_medvl(built: dict, options: dict, settings: Settings, out: Path, result_file: Path):
    """medvl's real SFT code path (`medvl train sft` = run_sft on an SFTConfig)."""
    from medvl.config import load_config
    from medvl.train.sft import run_sft
    from medvl.train.sft_config import SFTConfig

    overrides = [
        f"model={built['model']}",
        f"data.train={built['train']}",
        f"output_dir={out}",
        f"stage={options['stage']}",
        f"batch_size={batch_of(options, settings)}",
        "max_steps=100000",
        "learning_rate=1e-5",
        "warmup_ratio=0",
        "scheduler=constant",
        "save_steps=100000",
        "logging_steps=1",
        f"precision={settings.precision}",
        f"packing={str(options['packing']).lower()}",
        "group_by_length=true",
        "data.max_length=4096",
        f"gradient_checkpointing={str(options.get('gc', False)).lower()}",
    ]
    if options.get("long"):
        overrides.append(f"data.min_pixels={settings.long_pixels}")
    if options["stage"] == "full":
        overrides.append("unfreeze=[vision,merger,language,lm_head]")
    batch = batch_of(options, settings)
    result: dict[str, Any] = {"side": "medvl", **options, "batch": batch}
    config = load_config(SFTConfig, None, overrides)
    run_sft(config, callbacks=[timing_callback(settings, result, result_file, batch)])


def run_trl(built: dict, options: dict, settings: Settings, out: Path, result_file: Path):
    """TRL SFTTrainer's standard VLM path (padding, no packing), loss on assistant tokens."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    from medvl.data.formats.writers import to_trl
    from medvl.data.jsonl import read_records

    train = Path(built["train"])
    dataset = to_trl(read_records(train), train.parent).select_columns(["messages", "images"])
    processor = AutoProcessor.from_pretrained(built["model"])
    if options.get("long"):
        from medvl.models.processing import set_pixel_budget

        set_pixel_budget(processor, settings.long_pixels, None)
    dtype = torch.bfloat16 if settings.cuda else torch.float32
    net = AutoModelForImageTextToText.from_pretrained(
        built["model"], dtype=dtype, attn_implementation="sdpa"
    )
    peft_config = None
    if options["lora"]:
        from peft import LoraConfig

        from medvl.models.registry import get_family, lora_target_regex

        target = lora_target_regex(get_family("qwen2_vl"))
        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=target)
    result: dict[str, Any] = {"side": "trl", **options, "batch": settings.batch}
    for assistant_only in (True, False):  # TRL needs generation markers in the chat template
        args = SFTConfig(
            output_dir=str(out),
            per_device_train_batch_size=settings.batch,
            max_steps=100000,
            learning_rate=1e-5,
            lr_scheduler_type="constant",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            bf16=settings.cuda,
            max_length=None,
            assistant_only_loss=assistant_only,
            use_cpu=not settings.cuda,
            dataloader_num_workers=0,
        )
        result["assistant_only_loss"] = assistant_only
        try:
            trainer = SFTTrainer(
                model=net,
                args=args,
                train_dataset=dataset,
                processing_class=processor,
                peft_config=peft_config,
                callbacks=[timing_callback(settings, result, result_file)],
            )
            trainer.train()
            return
        except Exception as exc:
            if not assistant_only:
                raise
            result["assistant_only_error"] = " ".join(str(exc).split())[:300]


def run_predict(built: dict, options: dict, settings: Settings, out: Path, result_file: Path):
    """medvl's HF engine: length-sorted, left-padded batches, greedy, images in threads."""
    import torch

    from medvl.data.jsonl import read_records
    from medvl.infer.engine import ChatRequest, GenerationSettings
    from medvl.infer.hf_engine import HFEngine
    from medvl.models.loading import LoadOptions, load_model

    device, dtype = ("cuda", "bf16") if settings.cuda else ("cpu", "fp32")
    loaded = load_model(built["model"], options=LoadOptions(dtype=dtype, device=device))
    engine = HFEngine(loaded, batch_size=settings.predict_batch)
    test = Path(built["test"])
    requests = [ChatRequest.from_record(r, test.parent) for r in read_records(test)]
    for _ in engine.generate_batches(requests[: settings.predict_batch], GenerationSettings(4)):
        pass  # warm-up
    if settings.cuda:
        torch.cuda.reset_peak_memory_stats()
    gen = GenerationSettings(max_new_tokens=settings.predict_tokens)
    started, done, tokens, counted = time.perf_counter(), 0, 0, True
    for batch in engine.generate_batches(requests * 4, gen):
        for item in batch:
            done += 1
            if item.completion_tokens is None:
                counted = False
            tokens += item.completion_tokens or settings.predict_tokens
        if time.perf_counter() - started > settings.predict_cap:
            break
    seconds = time.perf_counter() - started
    result_file.write_text(
        json.dumps(
            {
                "side": "medvl_predict",
                "batch": settings.predict_batch,
                "max_new_tokens": settings.predict_tokens,
                "records": done,
                "seconds": round(seconds, 2),
                "records_per_s": round(done / seconds, 2),
                "new_tokens_per_s": round(tokens / seconds, 1),
                "tokens_counted": counted,
                "peak_memory_gib": peak_memory(settings),
            }
        )
    )


RUNNERS = {"medvl": run_medvl, "trl": run_trl, "predict": run_predict}
