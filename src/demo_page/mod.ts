/**
 * @module demo_page
 * The demo chat page served at `/`: one self-contained HTML document whose
 * script is built from the SDK's own classes.
 */

export { type DemoPageOptions, renderDemoPage } from "./page.ts";
