"""Draw the README's pictures of LeNet-5's insides into docs/images/:

    python docs/images/make_images.py

trains LeNet-5 on the digits for four epochs (seeded, seconds on a laptop
CPU, about 95% held-out accuracy), then saves the first layer's filters
(filters.png) and the Grad-CAM of the first held-out 9 it gets right at the C3 layer
(grad_cam.png).
"""
import os
import tempfile

import minicnn as mc
from minicnn import train as training

HERE = os.path.dirname(os.path.abspath(__file__))


def main(epochs=4):
    with tempfile.TemporaryDirectory() as folder:
        result = training.train(epochs=epochs, checkpoint=os.path.join(folder, "lenet5.safetensors"),
                                progress=False)
        state = mc.load(result["checkpoint"])["model"]
    model = mc.models.lenet5()
    model.load_state_dict(state)
    model.eval()
    _, test_set = training.digits_32x32()

    mc.viz.filters(model.features[0], ncols=6).savefig(os.path.join(HERE, "filters.png"), dpi=100)
    with mc.no_grad():
        image = next(image for image, label in test_set if label == 9 and model(image[None]).argmax().item() == 9)
    fig = mc.viz.grad_cam(model, image, "features.4")      # the tanh after C3: 16 maps of 10x10
    fig.suptitle("a held-out 9, classified correctly")
    fig.savefig(os.path.join(HERE, "grad_cam.png"), dpi=100)


if __name__ == "__main__":
    main()
