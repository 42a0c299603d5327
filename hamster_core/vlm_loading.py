"""Loading image-text-to-text processors on a venv without torchvision (ROS-free: the `transformers` backend and
the tiny checkpoints' training share it)."""
from __future__ import annotations


def load_processor(source: str):
    """AutoProcessor, or, where it needs torchvision for a video processor, the family's processor built from its
    image processor and tokenizer alone (plus its processor_config.json and chat template)."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(source)
    except ImportError as error:
        if "torchvision" not in str(error).lower():
            raise
        missing = error
    from transformers import ProcessorMixin
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(source).model_type
    processor_class = getattr(transformers, PROCESSOR_MAPPING_NAMES.get(model_type, ""), None)
    if processor_class is None:
        raise missing
    attributes = [name for name in processor_class.get_attributes() if "video" not in name]
    if set(attributes) != {"image_processor", "tokenizer"}:
        raise missing

    class ImagesOnly(processor_class):
        # The sub-processors from_pretrained loads and __init__ checks: the video processor is left out.
        get_attributes = classmethod(lambda cls: list(attributes))

        def __init__(self, image_processor, tokenizer, video_processor=None, **kwargs):
            super().__init__(image_processor, tokenizer, video_processor, **kwargs)

        def apply_chat_template(self, conversation, chat_template=None, **kwargs):
            # The family's own may read video settings (SmolVLM's frames and fps); images need only the common one.
            return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = processor_class.__name__
    settings, _ = processor_class.get_processor_dict(source)  # processor_config.json and the chat template
    init = processor_class.__init__.__code__
    accepted = set(init.co_varnames[1:init.co_argcount + init.co_kwonlyargcount]) - {"video_processor"}
    options = {key: value for key, value in settings.items() if key in accepted or key == "chat_template"}
    return ImagesOnly(AutoImageProcessor.from_pretrained(source), AutoTokenizer.from_pretrained(source), **options)
