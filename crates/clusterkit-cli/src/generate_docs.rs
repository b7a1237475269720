//! `clusterkit generate-docs DIR`: the man pages and the bash, zsh and fish
//! completions, generated from the command's own definition, so that they
//! follow every change of the CLI. `scripts/package` runs it.

use std::path::PathBuf;

use clap_complete::Shell;

/// Options of `clusterkit generate-docs`.
#[derive(clap::Args)]
pub(crate) struct GenerateDocsArgs {
    /// Write under this directory as under `/`: `usr/share/man/man1`,
    /// `usr/share/bash-completion/completions`,
    /// `usr/share/zsh/vendor-completions`, `usr/share/fish/vendor_completions.d`.
    root: PathBuf,
}

/// Where Debian's shells look for completions they load by themselves.
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "usr/share/bash-completion/completions"),
    (Shell::Zsh, "usr/share/zsh/vendor-completions"),
    (Shell::Fish, "usr/share/fish/vendor_completions.d"),
];

fn create(dir: PathBuf) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Writes the pages (one per visible command) and the completions of `cli`
/// under `args.root`, and prints each file written.
pub(crate) fn run(args: &GenerateDocsArgs, cli: clap::Command) -> Result<(), String> {
    let man = create(args.root.join("usr/share/man/man1"))?;
    clap_mangen::generate_to(cli.clone(), &man)
        .map_err(|e| format!("writing man pages to {}: {e}", man.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(&man)
        .and_then(|d| d.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>())
        .map_err(|e| format!("listing {}: {e}", man.display()))?;
    pages.sort();
    for page in pages {
        println!("{}", page.display());
    }
    let name = cli.get_name().to_owned();
    for (shell, dir) in COMPLETIONS {
        let dir = create(args.root.join(dir))?;
        let written = clap_complete::generate_to(shell, &mut cli.clone(), &name, &dir)
            .map_err(|e| format!("writing the {shell} completion to {}: {e}", dir.display()))?;
        // bash-completion loads a command's completion from a file named
        // after the command, not `clusterkit.bash`.
        let written = if shell == Shell::Bash {
            let plain = dir.join(&name);
            std::fs::rename(&written, &plain)
                .map_err(|e| format!("renaming {}: {e}", written.display()))?;
            plain
        } else {
            written
        };
        println!("{}", written.display());
    }
    Ok(())
}
