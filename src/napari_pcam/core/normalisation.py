"""The data pipeline's input normalisation: images become tensors normalised by the ImageNet statistics.

Both the data pipeline (`data.images.image_to_tensor`) and the encoders (which map this normalisation onto their
own) read these; they live below both.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
