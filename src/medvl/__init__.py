"""medvl: fine-tune, use and evaluate Qwen-VL vision-language models for medicine."""

__version__ = "0.1.0"
