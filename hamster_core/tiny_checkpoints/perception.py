"""Tiny random Grounding DINO, OWLv2, SAM, SAM 2, SAM 2 video and SAM 3 checkpoints, saved with `save_pretrained`.

Each builder writes a folder that the perception stages load with the same `from_pretrained` calls as a real
checkpoint (config, weights, tokenizer and processor files). Seeded, so two builds give the same weights;
each takes well under a few seconds. Their detections and masks are meaningless.

Build them all:  python -m hamster_core.tiny_checkpoints.perception OUT_DIR
"""
from __future__ import annotations

import argparse
import json
import string
import sys
from pathlib import Path

SEED = 0

# Words the scenes and tests use, so common phrases tokenize to whole words; letters cover the rest.
_WORDS = ("the a an and in on to of put pick up place it into onto object area table red green blue yellow "
          "purple orange white black gray grey pink cube block cylinder sphere ball bowl plate box tray cup "
          "container basket").split()


def _bert_vocab() -> dict[str, int]:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    unique = list(dict.fromkeys(tokens))
    return {token: index for index, token in enumerate(unique)}


def _clip_tokenizer(max_length: int):
    """A CLIP BPE tokenizer over single byte-level characters (no merges): every text tokenizes."""
    from transformers import CLIPTokenizer

    # GPT-2's byte -> printable character table, which CLIP's byte-level pre-tokenizer emits.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1),
                 *range(ord("\xae"), ord("\xff") + 1)]
    extra = [b for b in range(256) if b not in printable]
    characters = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    # As in CLIP's vocabulary the special tokens come last: OWL treats id 0 as "no query" and CLIP pools the
    # text at the highest id (end of text).
    tokens = [*characters, *(c + "</w>" for c in characters), "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _seed():
    import torch
    torch.manual_seed(SEED)


def _out(out_dir, name: str) -> Path:
    path = Path(out_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_grounding_dino(out_dir) -> Path:
    """~0.4M-parameter GroundingDinoForObjectDetection (Swin + BERT) with its processor, in OUT/grounding_dino."""
    from transformers import (BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessorPil, GroundingDinoProcessor, SwinConfig)
    path = _out(out_dir, "grounding_dino")
    _seed()
    swin = SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=224,
                      out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4])
    vocab = _bert_vocab()
    text = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 128, "vocab_size": len(vocab)}
    config = GroundingDinoConfig(d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
                                 decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=30,
                                 num_feature_levels=4, encoder_n_points=2, decoder_n_points=2,
                                 backbone_config=swin, text_config=text, max_text_len=64)
    model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(path)
    tokenizer = BertTokenizer(vocab=vocab, model_max_length=64)
    # Small input images keep the tiny model fast; a real checkpoint uses 800 x 1333.
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 160, "longest_edge": 224})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_owlv2(out_dir) -> Path:
    """Tiny Owlv2ForObjectDetection (ViT + CLIP text) with its processor, in OUT/owlv2."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor
    path = _out(out_dir, "owlv2")
    _seed()
    tokenizer = _clip_tokenizer(max_length=32)
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 32,
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 96, "patch_size": 16}
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
    model = Owlv2ForObjectDetection(config).eval()
    import torch
    with torch.no_grad():  # random box offsets saturate the sigmoid; small ones leave OWL's per-patch prior boxes
        model.box_head.dense2.weight.mul_(0.01)
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(path)
    image_processor = Owlv2ImageProcessorPil(size={"height": 96, "width": 96})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_sam(out_dir) -> Path:
    """Tiny SamModel (ViT encoder, 64 x 64 input) with its processor, in OUT/sam."""
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor
    path = _out(out_dir, "sam")
    _seed()
    vision = {"hidden_size": 16, "output_channels": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 64, "patch_size": 8, "window_size": 4, "global_attn_indexes": [1],
              "mlp_dim": 32, "num_pos_feats": 8}
    prompt = {"hidden_size": 16, "image_size": 64, "patch_size": 8, "mask_input_channels": 4}
    decoder = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "iou_head_hidden_dim": 16}
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    model.eval().save_pretrained(path)
    image_processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                           mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=image_processor).save_pretrained(path)
    return path


# SAM 2's preprocessing, as the released checkpoints' preprocessor_config.json states it. transformers has
# only a torchvision image processor for SAM 2, so the segmenter reads these values and preprocesses itself.
SAM2_PREPROCESSOR = {"image_processor_type": "Sam2ImageProcessor", "processor_class": "Sam2Processor",
                     "do_resize": True, "do_rescale": True, "do_normalize": True, "rescale_factor": 1 / 255,
                     "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                     "size": {"height": 1024, "width": 1024}, "mask_size": {"height": 256, "width": 256}}


def _tiny_hiera_vision(size: int, fpn_hidden_size: int):
    """SAM 2's vision config with a tiny Hiera encoder for size x size input (shared by sam2 and sam2_video)."""
    from transformers import Sam2HieraDetConfig, Sam2VisionConfig
    backbone = Sam2HieraDetConfig(hidden_size=8, image_size=size, patch_stride=4, patch_kernel_size=7,
                                  patch_padding=3, blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                                  num_attention_heads_per_stage=[1, 1, 2, 2],
                                  window_size_per_stage=[4, 4, 4, 2], global_attention_blocks=[3],
                                  window_positional_embedding_background_size=[4, 4])
    return Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                            backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
                            fpn_hidden_size=fpn_hidden_size)


def build_sam2(out_dir) -> Path:
    """Tiny Sam2Model (Hiera encoder, 64 x 64 input) with a preprocessor_config.json, in OUT/sam2."""
    from transformers import Sam2Config, Sam2MaskDecoderConfig, Sam2Model, Sam2PromptEncoderConfig
    path = _out(out_dir, "sam2")
    _seed()
    size = 64
    vision = _tiny_hiera_vision(size, fpn_hidden_size=16)
    prompt = Sam2PromptEncoderConfig(hidden_size=16, image_size=size, patch_size=16, mask_input_channels=4)
    decoder = Sam2MaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                    iou_head_hidden_dim=16)
    model = Sam2Model(Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    model.eval().save_pretrained(path)
    preprocessor = dict(SAM2_PREPROCESSOR, size={"height": size, "width": size}, mask_size={"height": 16, "width": 16})
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return path


def build_sam2_video(out_dir) -> Path:
    """Tiny Sam2VideoModel (Hiera encoder, 64 x 64 input, memory of 3 frames) with a preprocessor_config.json, in
    OUT/sam2_video. Its memory attention needs 64 channels and a hidden size above them (Sam2VideoRoPEAttention
    hard-codes kv_in_dim=64), so it is the largest tiny model here (~0.6 M parameters)."""
    from transformers import (Sam2VideoConfig, Sam2VideoMaskDecoderConfig, Sam2VideoModel,
                              Sam2VideoPromptEncoderConfig)
    path = _out(out_dir, "sam2_video")
    _seed()
    size, hidden = 64, 128
    vision = _tiny_hiera_vision(size, fpn_hidden_size=hidden)
    prompt = Sam2VideoPromptEncoderConfig(hidden_size=hidden, image_size=size, patch_size=16, mask_input_channels=4)
    decoder = Sam2VideoMaskDecoderConfig(hidden_size=hidden, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                         iou_head_hidden_dim=16)
    config = Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder, image_size=size,
        num_maskmem=3, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32, memory_attention_rope_feat_sizes=[4, 4],
        memory_encoder_hidden_size=hidden, memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=32)
    Sam2VideoModel(config).eval().save_pretrained(path)
    preprocessor = dict(SAM2_PREPROCESSOR, size={"height": size, "width": size}, mask_size={"height": 16, "width": 16})
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return path


# SAM 3's preprocessing as transformers' Sam3ImageProcessor defines it (a plain resize to 1008 x 1008, mean and
# std 0.5); that processor needs torchvision, so the sam3 detector reads these values and preprocesses itself.
SAM3_PREPROCESSOR = {"image_processor_type": "Sam3ImageProcessor", "processor_class": "Sam3Processor",
                     "do_resize": True, "do_rescale": True, "do_normalize": True, "rescale_factor": 1 / 255,
                     "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                     "size": {"height": 1008, "width": 1008}, "mask_size": {"height": 288, "width": 288}}


def build_sam3(out_dir) -> Path:
    """Tiny Sam3Model (ViT 56 x 56 input, CLIP text, DETR with 10 queries) with its CLIP tokenizer and a
    preprocessor_config.json, in OUT/sam3."""
    from transformers import Sam3Config, Sam3Model
    path = _out(out_dir, "sam3")
    _seed()
    tokenizer = _clip_tokenizer(max_length=32)
    hidden, size = 32, 56
    vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, image_size=size, patch_size=14, window_size=2, global_attn_indexes=[1],
               pretrain_image_size=28)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=32, projection_dim=32,
                bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
                eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    small = dict(hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=64)
    config = Sam3Config(vision_config=dict(backbone_config=vit, fpn_hidden_size=hidden,
                                           backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]]),
                        text_config=text, geometry_encoder_config=small, detr_encoder_config=small,
                        detr_decoder_config=dict(small, num_queries=10),
                        mask_decoder_config=dict(hidden_size=hidden, num_attention_heads=2))
    Sam3Model(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    preprocessor = dict(SAM3_PREPROCESSOR, size={"height": size, "width": size}, mask_size={"height": 16, "width": 16})
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return path


BUILDERS = {"grounding_dino": build_grounding_dino, "owlv2": build_owlv2, "sam": build_sam, "sam2": build_sam2,
            "sam2_video": build_sam2_video, "sam3": build_sam3}


def build_all(out_dir) -> dict[str, Path]:
    """Every tiny perception checkpoint into OUT_DIR/<name>; returns name -> folder."""
    return {name: build(out_dir) for name, build in BUILDERS.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write <name>/ checkpoints into")
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append", help="build only these (repeatable)")
    args = parser.parse_args(argv)
    for name in args.only or BUILDERS:
        print(f"{name}: {BUILDERS[name](args.out_dir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
