/**
 * `cairn/testing`: cache-hit regression tests for your own site. Start a Cairn in front of a
 * scripted or real origin (or point at any running cache), send requests, and assert on each
 * response's cache outcome, what was stored and how often the origin was hit. Works with node's
 * test runner, vitest and jest. Built only from Cairn's public API.
 */
export { startCacheTest, CacheTest, CacheTestResponse } from './harness.ts';
export type {
  CacheTestCacheOptions,
  CacheTestOptions,
  CacheTestRequestInit,
  ProxyFactoryContext,
  ProxyUnderTest,
  SentRequest,
} from './harness.ts';
export { startScriptedOrigin, startOriginTap, TEST_ID_HEADER } from './origin.ts';
export type {
  OriginExchange,
  OriginRecorder,
  OriginRequest,
  ScriptedOrigin,
  ScriptedReply,
  ScriptedRoute,
  ScriptedRoutes,
} from './origin.ts';
export { compilePattern } from './pattern.ts';
export type { RequestPattern } from './pattern.ts';
export { observeCache, CACHE_OUTCOMES } from './observe.ts';
export type { CacheObservation, CacheOutcome, CacheSignal, ResponseHeaders } from './observe.ts';
export {
  CacheExpectationError,
  describeObservation,
  describeResponse,
  expectHit,
  expectMiss,
  expectNotStored,
  expectOriginHits,
  expectOutcome,
  expectStored,
} from './expect.ts';
export { explainStorability, formatExplanation, formatSeconds } from './explain.ts';
export type { ExplainHeaders, ExplainInput, StorabilityExplanation } from './explain.ts';
export { explainUrl, formatUrlExplanation } from './explain-url.ts';
export type { ExplainUrlOptions, UrlExplanation } from './explain-url.ts';
export { checkFileSchema, loadCheckFile, routesOf, validateCheckFile } from './check-file.ts';
export type {
  CheckExpectation,
  CheckFile,
  CheckRange,
  CheckScenario,
  CheckStep,
  HeaderExpectation,
} from './check-file.ts';
export { countRequests, judgeResponse, runCheck } from './check-run.ts';
export type {
  CheckReport,
  CheckVerdict,
  RunCheckOptions,
  ScenarioCheckResult,
  ScenarioResult,
  StepResult,
} from './check-run.ts';
export { formatJUnit, formatReportTable, ProgressBar } from './check-report.ts';
export type { ProgressStream } from './check-report.ts';
export { checkCommand, checkOrExplain, explainCommand } from './cli.ts';
export type { CommandIo } from './cli.ts';
