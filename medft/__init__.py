"""medft: Hydra-configured supervised fine-tuning of LLMs on Korean medical QA."""

__version__ = "0.1.0"
