//! `naming = "country"`: files named by the server's metadata, safely.

use std::collections::BTreeSet;

use flagsd::testserver::TestServerOptions;

use crate::helpers::*;

#[test]
fn files_are_named_by_country_and_never_leave_the_output_directory() {
    let root = country_root(&[
        ("ad", r#""../../etc/x""#),
        ("ae", r#""/abs""#),
        ("af", r#""evil\u0007name\n""#),
        ("ag", r#""Same""#),
        ("al", r#""Same""#),
        ("ci", r#""Côte d'Ivoire""#),
        ("am", r#""..""#),
        ("ao", r#"42"#),
    ]);
    let server = server(TestServerOptions { root: Some(root.path().to_owned()), ..TestServerOptions::default() });
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        "[defaults]\noutput = \"out\"\n[[batch]]\nname = \"named\"\ncodes = [\"AD\", \"AE\", \"AF\", \"AG\", \"AL\", \"CI\", \"AM\", \"AO\"]\n\
         server = \"{}\"\nnaming = \"country\"\nverbose = true\n",
        server.url()
    );
    write_file(work.path(), "flagsd.toml", &config);
    let (status, stdout, stderr) = flagsd_in(work.path(), &["run", "--config", "flagsd.toml"], &[]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.contains("*** Error for AO: Metadata error (no \"country\" string)"), "{stdout}");

    let out = work.path().join("out/named");
    let names: BTreeSet<String> = files_in(&out).into_iter().collect();
    let same_twice = names.contains("Same (AG).gif") || names.contains("Same (AL).gif");
    assert!(same_twice && names.contains("Same.gif"), "{names:?}");
    for expected in ["_._etc_x.gif", "_abs.gif", "evilname.gif", "Côte d'Ivoire.gif", "AM.gif"] {
        assert!(names.contains(expected), "no {expected} in {names:?}");
    }
    assert_eq!(names.len(), 7, "{names:?}");
    // Nothing was written anywhere else.
    assert_eq!(files_in(work.path()), ["flagsd.toml", "out", "state"]);
    assert_eq!(files_in(&work.path().join("out")), ["named"]);
    let civ = std::fs::read(out.join("Côte d'Ivoire.gif")).unwrap();
    assert_eq!(civ, flagsd::testserver::dataset::get("flags/ci/ci.gif").unwrap());
}

#[test]
fn an_unchanged_file_keeps_its_country_name_when_another_code_claims_it() {
    let root = country_root(&[("ag", r#""Same""#), ("al", r#""Same""#)]);
    let server = server(TestServerOptions { root: Some(root.path().to_owned()), ..TestServerOptions::default() });
    let work = tempfile::tempdir().unwrap();
    let run = |codes: &str| {
        let config = format!(
            "[[batch]]\nname = \"named\"\ncodes = {codes}\nserver = \"{}\"\nnaming = \"country\"\n",
            server.url()
        );
        write_file(work.path(), "flagsd.toml", &config);
        flagsd_in(work.path(), &["run", "--config", "flagsd.toml"], &[])
    };
    let out = work.path().join("downloaded/named");
    let flag = |code: &str| flagsd::testserver::dataset::get(&format!("flags/{code}/{code}.gif")).unwrap();

    assert_eq!(run("[\"AG\"]").0, 0);
    assert_eq!(files_in(&out), ["Same.gif"]);
    // AL now claims the same country name while AG's file is unchanged.
    let (status, stdout, _) = run("[\"AG\", \"AL\"]");
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("  1 flag downloaded.\n  1 unchanged.\n"), "{stdout}");
    assert_eq!(files_in(&out), ["Same (AL).gif", "Same.gif"]);
    assert_eq!(std::fs::read(out.join("Same.gif")).unwrap(), flag("ag"), "AG's file was taken over");
    assert_eq!(std::fs::read(out.join("Same (AL).gif")).unwrap(), flag("al"));
}
