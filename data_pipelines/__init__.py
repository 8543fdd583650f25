"""Raw CMU-MOSEI / IEMOCAP releases -> preprocessed clips -> TFDS -> tf.data."""
