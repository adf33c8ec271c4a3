//! Property tests: arbitrary bytes for the helper path, arbitrary strings for
//! names. No panic, and the results the SPEC gives.

use proptest::prelude::*;
use reqmod::sim::{Executor, SimPlatform};
use reqmod::{KMOD_PATH_LEN, KernelRet, Kmod, MODULE_NAME_LEN, ModprobePath, ModuleName};

/// What `/proc/sys/kernel/modprobe` keeps of a write (SPEC §5), written plainly.
fn sysctl_model(input: &[u8]) -> Vec<u8> {
    input
        .iter()
        .take_while(|&&b| b != 0 && b != b'\n')
        .take(KMOD_PATH_LEN - 1)
        .copied()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn path_writes_follow_proc_dostring(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let path = ModprobePath::from_sysctl_write(&input);
        let want = sysctl_model(&input);
        prop_assert_eq!(path.as_bytes(), &want[..]);
        prop_assert_eq!(path.is_empty(), want.is_empty());
        let mut read = want.clone();
        read.push(b'\n');
        prop_assert_eq!(&path.sysctl_read()[..], &read[..]);
    }

    #[test]
    fn path_writes_through_kmod_decide_what_runs(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        let kmod = Kmod::new(SimPlatform::new());
        kmod.set_modprobe_path(&input);
        let mut ex = Executor::new();
        let h = ex.spawn(kmod.request_module(format_args!("m")));
        ex.run(kmod.platform()).unwrap();
        let ret = h.take().unwrap().kernel_ret();
        let want = sysctl_model(&input);
        let runs = kmod.platform().runs();
        if want.is_empty() {
            // Autoloading disabled: nothing runs.
            prop_assert_eq!(ret, -2);
            prop_assert!(runs.is_empty());
        } else {
            // The sim knows only /sbin/modprobe; any other path is a missing file.
            prop_assert_eq!(ret, if want == b"/sbin/modprobe" { 0 } else { -2 });
            prop_assert_eq!(runs.len(), 1);
            prop_assert_eq!(runs[0].command.path(), &want[..]);
        }
    }

    #[test]
    fn names_are_formatted_like_vsnprintf(name in any::<String>()) {
        let formatted = ModuleName::new(&name);
        if name.len() >= MODULE_NAME_LEN {
            prop_assert_eq!(formatted, Err(reqmod::Errno::ENAMETOOLONG));
        } else {
            let kept = name.split('\0').next().unwrap_or("");
            let formatted = formatted.unwrap();
            prop_assert_eq!(formatted.as_str(), kept);
        }
    }

    #[test]
    fn any_name_gets_a_spec_result(name in any::<String>(), wait in any::<bool>()) {
        let kmod = Kmod::new(SimPlatform::new());
        let mut ex = Executor::new();
        let h = ex.spawn(kmod.request(wait, format_args!("{name}")));
        ex.run(kmod.platform()).unwrap();
        let ret = h.take().unwrap().kernel_ret();
        let runs = kmod.platform().runs();
        if name.len() >= MODULE_NAME_LEN {
            prop_assert_eq!(ret, -36);
            prop_assert!(runs.is_empty());
        } else {
            prop_assert_eq!(ret, 0);
            let kept = name.split('\0').next().unwrap_or("");
            prop_assert_eq!(runs[0].command.argv()[3], kept.as_bytes());
            prop_assert_eq!(runs[0].command.argv()[2], b"--");
        }
        let st = kmod.stats();
        prop_assert_eq!(st.in_flight, 0);
        prop_assert_eq!(st.slots_in_use, 0);
    }
}
