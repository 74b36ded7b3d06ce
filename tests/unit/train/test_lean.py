"""tasks/train/lean.py: the trainer a run's driver builds without torch, and a Torch backend that Ray Train's
controller runs without torch: the functions it sends the workers are Ray's own."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_building_the_trainer_loads_no_torch():
    """Nor does its backend, which is what Ray Train's controller unpickles."""
    code = ("import json, sys; from tasks.train.lean import trainer_class; import ray.train; "
            "t = trainer_class()(lambda config: None, use_gpu=False, "
            "scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={'CPU': 0.5})); "
            "t._get_train_func(); t._create_default_callbacks(); t.backend_config.backend_cls(); "
            "print(json.dumps(['torch' in sys.modules, type(t).__name__]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, "LeanTorchTrainer"]


def test_its_backend_is_torch_free_and_sends_rays_functions():
    """The config and backend cross to Ray Train's controller as themselves; what the workers run is Ray's."""
    import ray.cloudpickle as pickle

    from tasks.train import lean

    trainer = lean.trainer_class()(lambda config: None, use_gpu=False)
    config = pickle.loads(pickle.dumps(trainer.backend_config))
    assert (config.backend, config.timeout_s, config.backend_cls) == ("gloo", 1800, lean.TorchBackend)
    assert config.backend_cls.share_cuda_visible_devices and not config.backend_cls.has_replica_groups
    assert lean.trainer_class()(lambda config: None, use_gpu=True).backend_config.backend == "nccl"
    from ray.train.torch import config as rays

    assert {"_setup_torch_process_group", "_set_torch_distributed_env_vars", "_shutdown_torch"} <= set(vars(rays))
