use podlife::kernel::loader::{Capture, LoadOptions};
#[test]
fn loads() {
    let c = Capture::load(&LoadOptions::default(), 0).unwrap_or_else(|e| panic!("{e:?}"));
    for f in &c.features {
        eprintln!("{f:?}");
    }
}
