"""SecCL on MNIST: a Flower app and the SecCL paper's experiments."""
