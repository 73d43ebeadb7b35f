"""medft's Optuna sweeper for Hydra (``hydra/sweeper=medft_optuna``); see optuna_sweeper.py."""
