"""Tiny random-weight checkpoints for the model tools, written the way real ones are laid out
(``save_pretrained`` folder: config, weights, tokenizer, preprocessor config), so that the tools'
own loading code runs on them. Sizes are minimal: they test plumbing, not quality."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from add_pipeline.tools.models.offline_tokenizers import BERT_WORDS, write_bert_tokenizer, write_clip_tokenizer


def _reinit(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Plain random init (normal weights, zero biases, unit norms): some default inits of tiny
    configs leave degenerate heads (e.g. OWLv2 boxes of zero width)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.fill_(1.0)
            elif p.dim() > 1:
                p.normal_(0.0, std)
            else:
                p.zero_()
    return model


def _preprocessor(d: Path, cfg: dict) -> None:
    (d / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))


def grounding_dino(d: Path) -> Path:
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    torch.manual_seed(0)
    cfg = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                             window_size=4, image_size=64, out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=len(BERT_WORDS), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        num_queries=20, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=32,
        encoder_attention_heads=2, decoder_attention_heads=2, max_text_len=32, encoder_n_points=2,
        decoder_n_points=2)
    GroundingDinoForObjectDetection(cfg).save_pretrained(d)
    write_bert_tokenizer(d)
    _preprocessor(d, {"image_processor_type": "GroundingDinoImageProcessor", "image_mean": [0.485, 0.456, 0.406],
                      "image_std": [0.229, 0.224, 0.225], "size": {"shortest_edge": 64, "longest_edge": 96}})
    return d


def owlv2(d: Path) -> Path:
    from transformers import Owlv2Config, Owlv2ForObjectDetection

    d.mkdir(parents=True, exist_ok=True)
    n = write_clip_tokenizer(d)
    torch.manual_seed(0)
    cfg = Owlv2Config(
        text_config=dict(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32)
    _reinit(Owlv2ForObjectDetection(cfg)).save_pretrained(d)
    _preprocessor(d, {"image_processor_type": "Owlv2ImageProcessor", "size": {"height": 64, "width": 64},
                      "image_mean": [0.48145466, 0.4578275, 0.40821073],
                      "image_std": [0.26862954, 0.26130258, 0.27577711]})
    return d


def sam(d: Path) -> Path:
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    cfg = SamConfig(
        vision_config=dict(hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=128, patch_size=16, window_size=4, global_attn_indexes=[1], num_pos_feats=16,
                           mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    SamModel(cfg).save_pretrained(d)
    _preprocessor(d, {"image_processor_type": "SamImageProcessor", "size": {"longest_edge": 128},
                      "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})
    return d


def sam2(d: Path) -> Path:
    from transformers import Sam2Config, Sam2Model

    torch.manual_seed(0)
    side = 128
    cfg = Sam2Config(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=16, image_size=[side, side],
                                 blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                                 num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 4, 4],
                                 global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4]),
            backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=32,
            backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2]),
        prompt_encoder_config=dict(hidden_size=32, image_size=side, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))
    Sam2Model(cfg).save_pretrained(d)
    _preprocessor(d, {"image_processor_type": "Sam2ImageProcessor", "size": {"height": side, "width": side},
                      "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})
    return d


def vitmatte(d: Path) -> Path:
    from transformers import VitMatteConfig, VitMatteForImageMatting

    torch.manual_seed(0)
    cfg = VitMatteConfig(
        backbone_config=dict(model_type="vitdet", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_channels=4, image_size=64, pretrain_image_size=64, patch_size=16,
                             out_features=["stage2"], use_relative_position_embeddings=True,
                             window_block_indices=[0], window_size=2),
        hidden_size=32, convstream_hidden_sizes=[8, 16, 16], fusion_hidden_sizes=[16, 16, 8, 8])
    VitMatteForImageMatting(cfg).save_pretrained(d)
    _preprocessor(d, {"image_processor_type": "VitMatteImageProcessor", "image_mean": [0.5, 0.5, 0.5],
                      "image_std": [0.5, 0.5, 0.5], "size_divisibility": 32})
    return d


def depth_anything(d: Path) -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    torch.manual_seed(0)
    cfg = DepthAnythingConfig(
        backbone_config=dict(model_type="dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                             image_size=56, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False),
        reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16, head_hidden_size=8)
    DepthAnythingForDepthEstimation(cfg).save_pretrained(d)
    _preprocessor(d, {"image_processor_type": "DPTImageProcessor", "size": {"height": 56, "width": 56},
                      "ensure_multiple_of": 14, "keep_aspect_ratio": True, "image_mean": [0.485, 0.456, 0.406],
                      "image_std": [0.229, 0.224, 0.225]})
    return d


class TinyLama(torch.nn.Module):
    """LaMa's I/O signature on a two-layer conv net: (image [B,3,H,W], mask [B,1,H,W]) -> [B,3,H,W] in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 3, 3, stride=2, padding=1),
                                       torch.nn.Upsample(scale_factor=2.0))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = image * (1 - mask)
        return torch.sigmoid(self.net(torch.cat([masked, mask], dim=1)))


def lama(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.script(TinyLama().eval()).save(str(path))
    return path


BUILDERS = {"grounding-dino": grounding_dino, "owlv2": owlv2, "sam": sam, "sam2": sam2, "vitmatte": vitmatte,
            "depth-anything": depth_anything}
