"""`modelport render`: the same Deployment, Service and HorizontalPodAutoscaler files, as
Kubernetes manifests with a kustomization (`kubectl apply -k DIR`)."""

from __future__ import annotations

from pathlib import Path

import click

from modelport.errors import ModelportError


@click.command()
@click.option(
    "--filename", "-f", "files", multiple=True, required=True,
    type=click.Path(path_type=Path, exists=True),
    help="A YAML file of modelport/v1 objects, or a folder (its other YAML files are passed over).",
)  # fmt: skip
@click.option("--target", type=click.Choice(["kubernetes"]), default="kubernetes", show_default=True)
@click.option(
    "--image", required=True, help="The image `modelport build` made (and you pushed), e.g. REGISTRY/mnist:1."
)
@click.option("--output", "-o", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The folder to write (replaced whole if render wrote it before).")  # fmt: skip
@click.option(
    "--models", type=click.Choice(["image", "volume"]), default="image", show_default=True,
    help="image: the models are in the image (modelport build). volume: a PersistentVolumeClaim "
    "holding MODEL/VERSION/ folders, mounted read-only at /models.",
)  # fmt: skip
@click.option("--models-claim", default="models", show_default=True, help="The claim of --models volume.")
@click.option("--image-pull-policy", type=click.Choice(["IfNotPresent", "Always", "Never"]),
              default="IfNotPresent", show_default=True)  # fmt: skip
@click.option(
    "--strict", is_flag=True, help="Refuse (exit 1, nothing written) if any field cannot be carried."
)
def render(
    files: tuple[Path, ...], target: str, image: str, out: Path, models: str, models_claim: str,
    image_pull_policy: str, strict: bool,
) -> None:  # fmt: skip
    """Write Kubernetes manifests (apps/v1, v1, autoscaling/v2, policy/v1; a Rollout and its
    AnalysisTemplates as Argo Rollouts' argoproj.io/v1alpha1) for the objects.

    \b
    modelport render -f examples/mnist/deploy.yaml --target kubernetes --image mnist:1 -o deploy/k8s/
    kubectl apply -k deploy/k8s/
    """
    from modelport.kube.pods import PodOptions  # pydantic and the spec: only when rendering
    from modelport.kube.render import load_objects_from, render_kubernetes, write_output

    try:
        options = PodOptions(
            image, "volume" if models == "volume" else "image", models_claim, image_pull_policy
        )
        rendered = render_kubernetes(load_objects_from(files), options)
        for note in rendered.notes:
            click.echo(f"{'error' if strict else 'warning'}: {note}", err=True)
        if strict and rendered.notes:
            count = len(rendered.notes)
            raise click.ClickException(
                f"--strict: {count} field(s) above cannot be carried as is; nothing written"
            )
        write_output(rendered, out)
    except ModelportError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"wrote {len(rendered.files)} files to {out}/; deploy with: kubectl apply -k {out}/")
