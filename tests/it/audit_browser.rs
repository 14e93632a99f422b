//! `agora audit --html` in a real headless Chromium: what the rendered page does, not
//! only what its bytes say.

use fantoccini::Locator;
use negotiation::test_utils::settled_deal;
use negotiation::PaymentMode;
use serde_json::{json, Value};

use crate::audit_cli::audit_tampered;
use crate::browser::{full_page_screenshot, screenshot, wait_for_element, wait_for_js, Browser};

/// The tampered entry's link in the list of discrepancies leads to that entry: the
/// browser goes to its anchor, and the entry is shown, marked, in its own colour.
#[tokio::test(flavor = "multi_thread")]
async fn agora_audit_html_link_leads_the_browser_to_the_marked_entry() {
    let dir = tempfile::tempdir().unwrap();
    let f = settled_deal(dir.path(), PaymentMode::Authorization).await;
    let t = audit_tampered(dir.path(), &f);
    drop(f);
    let anchor = &t.anchor;
    let path = t.html.to_str().unwrap();
    assert!(path.starts_with('/') && !path.contains(['#', '?', '%', ' ']));

    let browser = Browser::start().await;
    browser.goto(&format!("file://{path}")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Agora audit report");
    let shown = browser
        .execute("return location.hash", vec![])
        .await
        .unwrap();
    assert_eq!(shown, json!(""));
    full_page_screenshot(&browser, "audit-tampered").await;

    // The journal text is shown as text: the tampered kind is no element.
    let scripts = browser
        .execute("return document.scripts.length", vec![])
        .await
        .unwrap();
    assert_eq!(scripts, json!(0));

    // The list of discrepancies links to the entry.
    let link = wait_for_element(
        &browser,
        &format!("#discrepancies + ol > li.discrepancy > a[href='#{anchor}']"),
    )
    .await;
    let label = link.text().await.unwrap();
    assert!(
        label.ends_with(&format!("entry {}", t.entry)) && label.contains("tampered.journal"),
        "{label}"
    );

    link.click().await.unwrap();
    wait_for_js(&browser, &format!("return location.hash === '#{anchor}'")).await;
    let entry = browser.find(Locator::Id(anchor)).await.unwrap();
    assert!(entry.is_displayed().await.unwrap());
    assert_eq!(entry.tag_name().await.unwrap().to_lowercase(), "tr");
    assert_eq!(
        entry.attr("class").await.unwrap().as_deref(),
        Some("discrepancy")
    );
    screenshot(&browser, "audit-tampered-entry").await;

    // The rendered DOM: the target of the navigation is the tampered entry, in view,
    // in another colour than an entry without a discrepancy.
    let page = browser
        .execute(
            "const target = document.querySelector(':target');
             const normal = document.querySelector('table.timeline tr[id]:not(.discrepancy)');
             const box = target.getBoundingClientRect();
             return {
                 target: target.id,
                 kind: target.cells[2].textContent,
                 background: getComputedStyle(target).backgroundColor,
                 normal: normal.id,
                 normalBackground: getComputedStyle(normal).backgroundColor,
                 inView: box.bottom > 0 && box.top < window.innerHeight,
             };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(page["target"], json!(anchor), "{page:#}");
    assert_eq!(page["kind"], json!("<script>alert(1)</script>"), "{page:#}");
    assert_eq!(page["inView"], json!(true), "{page:#}");
    let background = |key: &str| page[key].as_str().map(str::to_owned);
    assert_ne!(page["normal"], Value::Null, "{page:#}");
    assert_ne!(
        background("background"),
        background("normalBackground"),
        "{page:#}"
    );
    assert_ne!(
        background("background").as_deref(),
        Some("rgba(0, 0, 0, 0)"),
        "{page:#}"
    );

    browser.close().await;
}
