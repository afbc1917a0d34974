"""A small ResNet-style CNN for CIFAR-10 or MNIST (docs/own-model.md): a stem conv + BatchNorm,
max-pool, a residual block (two 3x3 convs with BatchNorm, identity add), a depthwise-separable
block (3x3 depthwise conv + 1x1 pointwise conv, BatchNorm), global average pooling and a
linear classifier. Every ReLU is its own module, so a mask can be placed after each."""

from torch import nn


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(y)) + x)


class SeparableBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU()
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.bn2(self.pointwise(self.relu1(self.bn1(self.depthwise(x))))))


class SmallResNet(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.res = Residual(width)
        self.sep = SeparableBlock(width, 2 * width)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.stem(x))))
        x = self.sep(self.res(x))
        return self.fc(self.flatten(self.gap(x)))


def build():
    """CIFAR-10 (3 x 32 x 32) version."""
    return SmallResNet(3, 32)


def build_mnist_small():
    """A few-channel MNIST (1 x 28 x 28) version for fast tests."""
    return SmallResNet(1, 8)


def build_mnist():
    """MNIST (1 x 28 x 28) version used by docs/own-model.md."""
    return SmallResNet(1, 16)
