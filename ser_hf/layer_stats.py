"""A speech encoder with a layer-statistics head: the mean and standard deviation of every hidden layer over
the clip's real frames, standardised, then one linear classifier.

``LayerStatsForAudioClassification`` is what ser-hf's training saves by default. It is a
transformers ``PreTrainedModel`` registered with ``AutoConfig`` / ``AutoModelForAudioClassification``
(model type ``ser-hf-layer-stats``), so ``EmotionRecognizer``, ``AutoModelForAudioClassification`` and
``pipeline("audio-classification")`` load it once ``ser_hf.layer_stats`` is imported; and because
`save_pretrained` ships this file with the weights (``auto_map``), plain transformers loads it too with
``trust_remote_code=True``. This module therefore imports nothing from ser-hf.

Why not the standard heads: transformers' ``WhisperForAudioClassification`` averages its whole input
window, padding included, and takes no mask; and every standard head keeps only a (weighted) mean.
Pooling over the real frames only, with the spread next to the mean, is more accurate than the standard
weighted-layer head on the same cached encoder features (``bench/cv_ravdess.py`` compares them by
cross-validation; see the Training page of the documentation). Any encoder of the wav2vec2 family
(wav2vec2, HuBERT, WavLM, data2vec-audio) or a Whisper encoder can sit under the head; the real frames
come from the feature extractor's attention mask.

Speaker adaptation (``config.speaker_adaptive``): ser-hf trains the head on every clip twice, as heard
and mapped onto the training speakers' average voice (each feature's mean and spread), so the model also
recognises a speaker it has heard better: `set_speaker` maps later clips from that speaker's mean and
spread onto the reference (``reference_mean``, ``reference_spread``); until then, and after
`reset_speaker`, the mapping is the identity.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "ser-hf-layer-stats"


class LayerStatsConfig(PretrainedConfig):
    """Configuration of `LayerStatsForAudioClassification`.

    ``encoder`` is the encoder's own config as a dict (``model_type`` included); ``layers`` the hidden
    states pooled (indices into the encoder's ``hidden_states``, 0 = the input of the first layer;
    ``None`` = all of them); ``classifier_dropout`` applies to the standardised statistics in training;
    ``speaker_adaptive`` says the head was trained to adapt to a speaker (see
    `LayerStatsForAudioClassification.set_speaker`).
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        layers: list[int] | None = None,
        classifier_dropout: float = 0.0,
        speaker_adaptive: bool = False,
        **kwargs: Any,
    ):
        self.encoder = dict(encoder) if encoder is not None else {"model_type": "wav2vec2"}
        self.layers = [int(i) for i in layers] if layers is not None else None
        self.classifier_dropout = float(classifier_dropout)
        self.speaker_adaptive = bool(speaker_adaptive)
        super().__init__(**kwargs)

    @property
    def encoder_config(self) -> PretrainedConfig:
        """The encoder's config object (built afresh from ``encoder``)."""
        settings = dict(self.encoder)
        return AutoConfig.for_model(settings.pop("model_type"), **settings)

    @property
    def is_whisper(self) -> bool:
        return self.encoder.get("model_type") == "whisper"

    def hidden_size(self) -> int:
        return int(self.encoder["d_model"] if self.is_whisper else self.encoder["hidden_size"])

    def pooled_layers(self) -> list[int]:
        total = int(self.encoder["encoder_layers" if self.is_whisper else "num_hidden_layers"]) + 1
        layers = list(range(total)) if self.layers is None else list(self.layers)
        if not layers or any(not 0 <= i < total for i in layers):
            raise ValueError(f"layers must be indices of the encoder's {total} hidden states, not {self.layers}")
        return layers


def build_encoder(config: PretrainedConfig) -> PreTrainedModel:
    """The bare encoder for an encoder config: Whisper's encoder alone, else the Auto base model."""
    if config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(config)
    return AutoModel.from_config(config)


def masked_mean_std(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over the first ``lengths[i]`` positions of ``hidden`` ``(batch, layers,
    positions, size)``: ``(batch, layers, 2 * size)``, the means first (computed in float32)."""
    hidden = hidden.float()
    positions = hidden.shape[2]
    lengths = lengths.clamp(1, positions).to(hidden.device)
    mask = (torch.arange(positions, device=hidden.device)[None] < lengths[:, None]).to(hidden.dtype)
    mask = mask[:, None, :, None]
    count = lengths.to(hidden.dtype).view(-1, 1, 1)
    mean = (hidden * mask).sum(dim=2) / count
    variance = ((hidden - mean.unsqueeze(2)).pow(2) * mask).sum(dim=2) / count
    return torch.cat([mean, variance.clamp_min(1e-10).sqrt()], dim=-1)


class LayerStatsForAudioClassification(PreTrainedModel):
    """Encoder → mean and std of the chosen hidden layers over the real frames → standardise → linear."""

    config_class = LayerStatsConfig
    base_model_prefix = "encoder"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True

    def __init__(self, config: LayerStatsConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.encoder_config)
        self.main_input_name = "input_features" if config.is_whisper else "input_values"
        features = statistics_size(config)
        # Fitted on the training clips' statistics; the classifier sees standardised features.
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        if config.speaker_adaptive:
            # The training speakers' average voice, and the current speaker's (the reference until set).
            self.register_buffer("reference_mean", torch.zeros(features))
            self.register_buffer("reference_spread", torch.ones(features))
            self.register_buffer("speaker_mean", torch.zeros(features))
            self.register_buffer("speaker_spread", torch.ones(features))
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(features, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def real_positions(self, positions: int, attention_mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        """How many of the encoder's ``positions`` hold the clip (the rest is padding), per clip."""
        if attention_mask is None:
            return torch.full((batch,), positions, dtype=torch.long)
        if self.config.is_whisper:
            # The mask counts samples (or mel frames); the window's positions cover its length evenly.
            real = attention_mask.sum(dim=-1).double() * positions / attention_mask.shape[-1]
            return torch.ceil(real - 1e-6).long().cpu()
        frames = self.encoder._get_feature_vector_attention_mask(positions, attention_mask)
        return frames.sum(dim=-1).long().cpu()

    def pooled_statistics(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The raw (unstandardised) statistics ``(batch, layers, 2 * hidden)`` of a batch."""
        return self.pooled_statistics_and_frames(input_values, input_features, attention_mask)[0]

    def pooled_statistics_and_frames(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`pooled_statistics` and how many real frames each clip's statistics cover ``(batch,)``: what
        combines the statistics of several windows of one recording exactly (frame-weighted)."""
        if self.config.is_whisper:
            if input_features is None:
                raise ValueError("a Whisper encoder takes input_features (from its feature extractor)")
            outputs = self.encoder(input_features, output_hidden_states=True)
        else:
            if input_values is None:
                raise ValueError(f"a {self.config.encoder['model_type']} encoder takes input_values")
            outputs = self.encoder(input_values, attention_mask=attention_mask, output_hidden_states=True)
        hidden = torch.stack([outputs.hidden_states[i] for i in self.config.pooled_layers()], dim=1)
        lengths = self.real_positions(hidden.shape[2], attention_mask, hidden.shape[0]).clamp(1, hidden.shape[2])
        return masked_mean_std(hidden, lengths), lengths

    def classify(
        self,
        statistics: torch.Tensor,
        speaker_mean: torch.Tensor | None = None,
        speaker_spread: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for raw statistics ``(batch, layers, 2 * hidden)``, for the current speaker (or the one given
        by ``speaker_mean`` and ``speaker_spread``, flattened, without changing the current one)."""
        flat = statistics.flatten(1).to(self.feature_mean.dtype)
        if self.config.speaker_adaptive:
            mean = self.speaker_mean if speaker_mean is None else torch.as_tensor(speaker_mean).to(flat)
            spread = self.speaker_spread if speaker_spread is None else torch.as_tensor(speaker_spread).to(flat)
            flat = (flat - mean) / spread * self.reference_spread + self.reference_mean
        return self.classifier(self.dropout((flat - self.feature_mean) / self.feature_std))

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        logits = self.classify(self.pooled_statistics(input_values, input_features, attention_mask))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def from_encoder(
        cls, encoder: PreTrainedModel, encoder_config: PretrainedConfig, **config_kwargs: Any
    ) -> LayerStatsForAudioClassification:
        """A model around a copy of ``encoder``'s weights (the head zero until `set_head`)."""
        settings = encoder_config.to_dict()
        for key in ("id2label", "label2id", "architectures", "_name_or_path", "transformers_version"):
            settings.pop(key, None)
        model = cls(LayerStatsConfig(encoder=settings, **config_kwargs))
        missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(f"encoder weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return model

    @torch.no_grad()
    def set_head(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install a trained head: the standardisation ``(mean, std)`` of the flattened statistics, then the
        classifier's ``weight`` and ``bias``."""
        self.feature_mean.copy_(torch.as_tensor(mean).flatten())
        self.feature_std.copy_(torch.as_tensor(std).flatten())
        self.classifier.weight.copy_(torch.as_tensor(weight))
        self.classifier.bias.copy_(torch.as_tensor(bias))

    def _require_adaptive(self) -> None:
        if not self.config.speaker_adaptive:
            raise ValueError(
                "this model's head was not trained to adapt to speakers (config.speaker_adaptive is False); "
                "train it with speaker adaptation on"
            )

    @torch.no_grad()
    def set_reference_speaker(self, mean: torch.Tensor, spread: torch.Tensor) -> None:
        """Set the training speakers' average voice (flattened mean and spread); the current speaker too."""
        self._require_adaptive()
        self.reference_mean.copy_(torch.as_tensor(mean).flatten())
        self.reference_spread.copy_(torch.as_tensor(spread).flatten())
        self.reset_speaker()

    @torch.no_grad()
    def set_speaker(self, mean: torch.Tensor, spread: torch.Tensor) -> None:
        """Map later clips from this speaker's statistics (flattened mean and spread) onto the reference."""
        self._require_adaptive()
        mean, spread = torch.as_tensor(mean).flatten(), torch.as_tensor(spread).flatten()
        if mean.numel() != self.speaker_mean.numel() or spread.numel() != self.speaker_spread.numel():
            raise ValueError(f"a speaker is {self.speaker_mean.numel()} means and spreads, got {mean.numel()}")
        self.speaker_mean.copy_(mean)
        self.speaker_spread.copy_(spread.clamp_min(1e-6))

    @torch.no_grad()
    def reset_speaker(self) -> None:
        """Back to the training speakers' average voice (no mapping)."""
        self._require_adaptive()
        self.speaker_mean.copy_(self.reference_mean)
        self.speaker_spread.copy_(self.reference_spread)


def statistics_size(config: LayerStatsConfig) -> int:
    """How many numbers the head standardises: 2 statistics x hidden size x pooled layers."""
    return len(config.pooled_layers()) * 2 * config.hidden_size()


def _register() -> None:
    AutoConfig.register(MODEL_TYPE, LayerStatsConfig, exist_ok=True)
    AutoModelForAudioClassification.register(LayerStatsConfig, LayerStatsForAudioClassification, exist_ok=True)
    # save_pretrained then writes this file beside the weights and an auto_map into config.json
    LayerStatsConfig.register_for_auto_class()
    LayerStatsForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")


_register()

__all__ = ["LayerStatsConfig", "LayerStatsForAudioClassification", "masked_mean_std", "statistics_size"]
