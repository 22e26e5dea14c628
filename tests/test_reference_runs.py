"""A reference implementation run (pytorch-CycleGAN-and-pix2pix's checkpoints/NAME) imported,
trained on, translated with, and exported back in its layout. The reference's networks are
written out here from its published architecture (models/networks.py), independently of
transfigure's, so the layouts are checked against theirs, not our own."""
import torch
from torch import nn

from transfigure.cli import main


# ---------------------------------------------------------------- the reference's networks

class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """networks.ResnetGenerator with instance norm, no dropout (use_bias=True), reflect padding."""

    def __init__(self, ngf, n_blocks):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=True), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                       nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=True), nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """networks.NLayerDiscriminator (netD basic: n_layers 3) with instance norm."""

    def __init__(self, ndf, n_layers=3):
        super().__init__()
        layers = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True),
                       nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True),
                   nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def train_opt_txt(options: dict) -> str:
    """train_opt.txt as the reference's BaseOptions.print_options writes it."""
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(options.items()):
        comment = "\t[default: None]" if k == "dataroot" else ""
        lines.append(f"{k:>25}: {str(v):<30}{comment}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines) + "\n"


def reference_run(folder, dataroot):
    """checkpoints/NAME of a cycle_gan run stopped after epoch 3 (latest = 3's files), with one
    pre-0.4 file whose InstanceNorm layers still carry running statistics."""
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    nets = {"G_A": ResnetGenerator(4, 2), "G_B": ResnetGenerator(4, 2), "D_A": NLayerDiscriminator(4),
            "D_B": NLayerDiscriminator(4)}
    for name, net in nets.items():
        sd = net.state_dict()
        if name == "G_A":
            sd["model.2.running_mean"], sd["model.2.running_var"] = torch.zeros(4), torch.ones(4)
        for label in ("3", "latest"):
            torch.save(sd, folder / f"{label}_net_{name}.pth")
    options = {"model": "cycle_gan", "netG": "resnet_2blocks", "netD": "basic", "ngf": 4, "ndf": 4,
               "norm": "instance", "no_dropout": True, "dataroot": dataroot, "name": "h2z", "gpu_ids": "0",
               "display_id": 1, "display_port": 8097, "load_size": 36, "crop_size": 32, "batch_size": 1,
               "lr": 0.0002, "beta1": 0.5, "n_epochs": 5, "n_epochs_decay": 5, "epoch_count": 1,
               "lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5, "pool_size": 50, "gan_mode": "lsgan",
               "direction": "AtoB", "dataset_mode": "unaligned", "input_nc": 3, "output_nc": 3,
               "init_type": "normal", "init_gain": 0.02, "lr_policy": "linear", "isTrain": True, "phase": "train",
               "use_wandb": False, "serial_batches": False, "preprocess": "resize_and_crop", "no_flip": False}
    (folder / "train_opt.txt").write_text(train_opt_txt(options))
    return nets


def test_a_reference_run_is_imported_trained_translated_and_exported_back(tmp_path, tiny_dataset, capsys):
    from PIL import Image

    nets = reference_run(tmp_path / "reference" / "h2z", str(tiny_dataset))
    ck = tmp_path / "checkpoints"
    assert main(["import", str(tmp_path / "reference" / "h2z"), "--name", "h2z", "--checkpoints_dir", str(ck)]) == 0
    out = capsys.readouterr().out
    assert "training continues at epoch 4" in out and "Adam's moments start from zero" in out
    assert "display_id" in out and "gpu_ids" in out  # listed as having no counterpart
    state = torch.load(ck / "h2z" / "latest.ckpt", weights_only=True)
    for name, net in nets.items():  # strict and exact: the reference's tensors, legacy keys dropped
        assert state["nets"][name].keys() == net.state_dict().keys()
        assert all(torch.equal(state["nets"][name][k], v) for k, v in net.state_dict().items())
    lr = state["schedulers"]["G"]["_last_lr"][0]
    assert abs(lr - 0.0002) < 1e-12 and state["epoch"] == 4  # linear decay starts after epoch 5

    assert main(["train", "--name", "h2z", "--checkpoints_dir", str(ck), "--continue_train", "--max_iters", "2",
                 "--num_threads", "0", "--no_progress"]) == 0
    trained = torch.load(ck / "h2z" / "latest.ckpt", weights_only=True)
    assert trained["total_steps"] == 2 and trained["epoch"] == 4
    assert not torch.equal(trained["nets"]["G_A"]["model.1.weight"], state["nets"]["G_A"]["model.1.weight"])

    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 28), (90, 140, 30)).save(photo)
    assert main(["translate", "--name", "h2z", "--checkpoints_dir", str(ck), "--input", str(photo), "--output",
                 str(tmp_path / "out"), "--no_progress"]) == 0
    assert Image.open(tmp_path / "out" / "photo.png").size == (40, 28)

    back = tmp_path / "back"
    assert main(["export", "--name", "h2z", "--checkpoints_dir", str(ck), "--format", "official", "--out",
                 str(back)]) == 0
    for name, cls in (("G_A", ResnetGenerator), ("G_B", ResnetGenerator), ("D_A", NLayerDiscriminator),
                      ("D_B", NLayerDiscriminator)):
        official = cls(4, 2) if cls is ResnetGenerator else cls(4)
        official.load_state_dict(torch.load(back / f"latest_net_{name}.pth", weights_only=True), strict=True)
        assert torch.equal(official.state_dict()["model.1.weight" if cls is ResnetGenerator else "model.0.weight"],
                           trained["nets"][name]["model.1.weight" if cls is ResnetGenerator else "model.0.weight"])
    assert "netG: resnet_2blocks" in (back / "train_opt.txt").read_text().replace("  ", "")
    assert main(["export", "--name", "h2z", "--checkpoints_dir", str(ck), "--format", "official", "--out",
                 str(back)]) == 2  # never over existing files without --overwrite


def test_an_import_without_the_files_names_what_is_missing(tmp_path, tiny_dataset, capsys):
    folder = tmp_path / "reference" / "h2z"
    reference_run(folder, str(tiny_dataset))
    (folder / "latest_net_D_B.pth").unlink()
    assert main(["import", str(folder), "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")]) == 2
    assert "latest_net_D_B.pth missing" in capsys.readouterr().err
    assert main(["import", str(tmp_path), "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")]) == 2
    assert "no train_opt.txt" in capsys.readouterr().err
    assert not (tmp_path / "ck" / "x").exists()
