"""The one config object: ``schema`` (sections), ``recipes`` (TRL-style training recipes), ``load`` (layers)."""

from lema.config.load import config_from_dict, deep_merge, drop_defaults, load_config
from lema.config.recipes import RECIPE_LEMA_KEYS, RECIPE_TRL_KEYS, load_recipe, recipe_to_train
from lema.config.schema import (
                                BaseModelConfig,
                                BudgetConfig,
                                Config,
                                CorrectorConfig,
                                DataConfig,
                                EvalFields,
                                EvalSetConfig,
                                EvaluateConfig,
                                GeneratorConfig,
                                LoraConfigModel,
                                PriceConfig,
                                RegisterConfig,
                                SFTConfigModel,
                                TrainConfig,
                                ValidateConfig,
                                VLLMConfig,
)

__all__ = ["RECIPE_LEMA_KEYS", "RECIPE_TRL_KEYS", "BaseModelConfig", "BudgetConfig", "Config", "CorrectorConfig",
           "DataConfig", "EvalFields", "EvalSetConfig", "EvaluateConfig", "GeneratorConfig", "LoraConfigModel",
           "PriceConfig", "RegisterConfig", "SFTConfigModel", "TrainConfig", "ValidateConfig", "VLLMConfig",
           "config_from_dict", "deep_merge", "drop_defaults", "load_config", "load_recipe", "recipe_to_train"]
