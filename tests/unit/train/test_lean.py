"""tasks/train/lean.py: the trainer a run's driver builds without torch, whose Torch backend becomes Ray's own
where Ray Train's controller unpickles it."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_building_the_trainer_loads_no_torch():
    code = ("import json, sys; from tasks.train.lean import trainer_class; import ray.train; "
            "t = trainer_class()(lambda config: None, use_gpu=False, "
            "scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={'CPU': 0.5})); "
            "t._get_train_func(); t._create_default_callbacks(); "
            "print(json.dumps(['torch' in sys.modules, type(t).__name__]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, "LeanTorchTrainer"]


def test_its_backend_is_rays_torch_backend_once_unpickled():
    import ray.cloudpickle as pickle
    from ray.train.torch.config import TorchConfig, _TorchBackend

    from tasks.train.lean import trainer_class

    trainer = trainer_class()(lambda config: None, use_gpu=False)
    config = pickle.loads(pickle.dumps(trainer.backend_config))
    assert type(config) is TorchConfig and config.backend == "gloo"
    backend = pickle.loads(pickle.dumps(trainer.backend_config.backend_cls()))
    assert isinstance(backend, _TorchBackend)
    assert trainer_class()(lambda config: None, use_gpu=True).backend_config.backend == "nccl"
