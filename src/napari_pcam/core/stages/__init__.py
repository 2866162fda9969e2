"""One module per step of the chain: cam, affinity (+ IRNet training), random_walk, segmentation."""
