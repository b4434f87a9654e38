"""Moved to ``edgeship.runtime.decoders.detect``; its names still import from here.

>>> from edgeship.runtime.decoders.detect import batched_nms, detect_boxes, nms
"""

from .decoders.detect import (
    MAX_NMS_CANDIDATES,
    BoxDecoder,
    batched_nms,
    cxcywh_to_xyxy,
    decode_ssd,
    decode_yolov8,
    detect,
    detect_boxes,
    iou_one_to_many,
    load_anchors,
    nms,
    register_box_decoder,
)

__all__ = [
    "MAX_NMS_CANDIDATES", "BoxDecoder", "batched_nms", "cxcywh_to_xyxy", "decode_ssd", "decode_yolov8", "detect",
    "detect_boxes", "iou_one_to_many", "load_anchors", "nms", "register_box_decoder",
]
